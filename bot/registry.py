"""Commands declared once: ``@command`` turns an async function into a ``Command`` value.

The function's parameters (after the context) are the command's arguments: their annotations say
how text is converted, their defaults make them optional, and the signature is the usage line.
The first line of the docstring is the help text. Modelled on discord.py's ``ext.commands``.
"""

from __future__ import annotations

import enum
import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from bot.errors import UsageError
from bot.roles import Role
from erm.errors import InvalidInputError
from erm.inputs import MAX_DAYS, MAX_HISTORY, MIN_DAYS, check_item_ref

# A number, then perhaps a unit, attached (``30d``) or as a separate word (``30 days``).
_AMOUNT = re.compile(r"([0-9]+)\s*([^\W\d_]*)\.?")
# Units of days: what a person says is what is issued.
_DAY_UNITS = {"d": 1, "day": 1, "days": 1, "w": 7, "wk": 7, "wks": 7, "week": 7, "weeks": 7}
# Units that are not days: refused with the command to type in days, never converted silently
# (a month is not always 30 days; the person must say how many days they mean). The value is the
# unit's name in the refusal and the days it suggests per unit (0: less than a day).
_OTHER_UNITS: dict[str, tuple[str | None, int]] = {
    **dict.fromkeys(("mo", "mos", "mth", "mths", "month", "months"), ("month", 30)),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), ("year", 365)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), ("hour", 0)),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), ("minute", 0)),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), ("second", 0)),
    # Named as typed: fortnights, and the words agents write in French, Portuguese, Spanish and
    # Swahili (a Swahili "1 mwezi" must not issue 1 day with the note "mwezi"). Not French "an":
    # "30 an advance" is a note.
    **dict.fromkeys(("fortnight", "fortnights"), (None, 14)),
    **dict.fromkeys(("semaine", "semaines", "semana", "semanas", "wiki"), (None, 7)),
    **dict.fromkeys(("mois", "mes", "meses", "mês", "mwezi", "miezi"), (None, 30)),
    **dict.fromkeys(("ans", "ano", "anos", "año", "años", "mwaka", "miaka"), (None, 365)),
}
ASCII_DIGITS = "the digits 0-9"


@dataclass(frozen=True, slots=True)
class Arg:
    """How one argument is read from text. ``rest`` takes everything left on the line; ``joins``
    says whether the next word belongs to this argument too (a unit after a number: ``30 days``);
    ``secret`` keeps it out of the audit trail."""

    convert: Callable[[str], Any]
    rest: bool = False
    joins: Callable[[str, str], bool] | None = None
    secret: bool = False  # never kept as typed: the audit row says only that one was given
    hidden: bool = False  # not in the usage line: taken only to answer a mistake precisely


class Retype(ValueError):
    """The argument cannot be used as typed, but what to type is clear: the parser shows the
    whole command again with ``replacement`` in its place."""

    def __init__(self, problem: str, replacement: str) -> None:
        super().__init__(problem)
        self.replacement = replacement


def number(text: str, what: str, low: int, high: int) -> int:
    """``text`` as a whole number from ``low`` to ``high``, or a ``ValueError`` that says why not.

    Only ASCII digits count: ``int()`` reads Arabic-Indic or fullwidth digits silently and raises
    on superscripts (``²``), so a number typed in another script is refused with its own message.
    """
    raw = text.strip()
    if any(ch.isdigit() and not ch.isascii() for ch in raw):
        raise ValueError(f"type {what} with {ASCII_DIGITS}, not {raw[:20]!r}")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not low <= int(raw) <= high:
        raise ValueError(f"{what} must be a number from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


def _item(text: str) -> str:
    try:
        return check_item_ref(text)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None


def _unit(word: str) -> str:
    return word.strip().lower().rstrip(".,")


def parse_days(text: str) -> int:
    """A number of days as people type it (``30``, ``30d``, ``2w``, ``30 days``), or a
    ``ValueError`` (a :class:`Retype` for months and years) that says what to type."""
    raw = text.strip()
    if any(ch.isdigit() and not ch.isascii() for ch in raw):
        raise ValueError(f"type the days with {ASCII_DIGITS}, not {raw[:20]!r}")
    match = _AMOUNT.fullmatch(raw)
    if not match:
        raise ValueError(f"days must be a number like 30, 30d or 2w, not {raw[:20]!r}")
    count, unit = match.group(1), _unit(match.group(2)) or "d"
    if len(count) > 6:
        raise ValueError(f"days must be from {MIN_DAYS} to {MAX_DAYS}, not {count[:20]}")
    amount = int(count)
    if unit == "m":  # months or minutes: either way not days, and no guess at which
        raise ValueError(f"{raw[:20]!r} is not a number of days (months? minutes?)")
    if unit in _OTHER_UNITS:
        name, per = _OTHER_UNITS[unit]
        said = f"{amount} {name}{'' if amount == 1 else 's'}" if name else f"{amount} {unit}"
        wanted = amount * per
        problem = f"{said} is not a number of days"
        if wanted < MIN_DAYS:
            problem += f": a code adds whole days, at least {MIN_DAYS}"
        elif wanted > MAX_DAYS:
            problem += f": a code adds at most {MAX_DAYS}"
        raise Retype(problem, str(min(max(wanted, MIN_DAYS), MAX_DAYS)))
    if unit not in _DAY_UNITS:
        raise ValueError(f"days must be a number like 30, 30d or 2w, not {raw[:20]!r}")
    days = amount * _DAY_UNITS[unit]
    if not MIN_DAYS <= days <= MAX_DAYS:
        shown = str(days) if _DAY_UNITS[unit] == 1 else f"{days} ({raw[:20]})"
        raise ValueError(f"days must be from {MIN_DAYS} to {MAX_DAYS}, not {shown}")
    return days


def _unit_follows(word: str, following: str) -> bool:
    """``30 days``, ``2 weeks``, ``1 month``: a unit typed as its own word after a bare number."""
    unit = _unit(following)
    return word.isdigit() and (unit in _DAY_UNITS or unit in _OTHER_UNITS or unit == "m")


def _count(text: str) -> int:
    return number(text, "the count", 1, MAX_HISTORY)


def _word(text: str) -> str:
    if len(text) > 100:
        raise ValueError("that is too long")
    return text


def _text(text: str) -> str:
    if len(text) > 200:
        raise ValueError(f"the text is too long ({len(text)} characters, at most 200)")
    return text


ItemRef = Annotated[str, Arg(_item)]
Days = Annotated[int, Arg(parse_days, joins=_unit_follows)]
Count = Annotated[int, Arg(_count)]
Word = Annotated[str, Arg(_word)]
Secret = Annotated[str, Arg(_word, secret=True)]  # a one-time code typed by a person (an invite)
Text = Annotated[str, Arg(_text, rest=True)]
Extra = Annotated[str, Arg(_text, rest=True, hidden=True)]  # words a command does not take


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    arg: Arg
    required: bool
    default: Any = None

    @property
    def usage(self) -> str:
        return f"<{self.name}>" if self.required else f"[{self.name}]"

    def convert(self, text: str, command: Command) -> Any:
        try:
            return self.arg.convert(text)
        except Retype:
            raise  # the parser shows the whole command to type instead
        except ValueError as exc:
            raise UsageError(f"{self.name}: {exc}", command.usage, command.example) from None


Handler = Callable[..., Awaitable[Any]]


def _arg_of(hint: Any) -> Arg | None:
    """The ``Arg`` in ``Annotated[..., Arg]``, also inside ``X | None``."""
    candidates = (
        [hint, *typing.get_args(hint)] if typing.get_origin(hint) is not Annotated else [hint]
    )
    for candidate in candidates:
        for meta in getattr(candidate, "__metadata__", ()):
            if isinstance(meta, Arg):
                return meta
    return None


class Kind(enum.StrEnum):
    """What a command does, which picks the quota it counts against."""

    LOOKUP = "lookup"  # reads ERM: the per-person lookup quota
    CODE = "code"  # makes a code: the code quotas, the approval policy, the stale check
    ADMIN = "admin"  # changes the bot's own state
    META = "meta"  # about the bot or the person: no quota


@dataclass(frozen=True, slots=True)
class Command:
    """One chat command: its words, arguments, the role it needs and its help."""

    path: tuple[str, ...]
    handler: Handler
    params: tuple[Param, ...]
    role: Role
    help: str
    example: str
    flags: frozenset[str] = frozenset()
    per_distributor: bool = True  # runs for one distributor (chosen or implied)
    kind: Kind = Kind.LOOKUP
    anyone: bool = False  # runs for users without any role (onboarding: /start)

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def usage(self) -> str:
        parts = [f"/{self.name}", *(p.usage for p in self.params if not p.arg.hidden)]
        parts += [f"[--{flag}]" for flag in sorted(self.flags)]
        return " ".join(parts)


def command(
    *path: str,
    role: Role,
    example: str,
    flags: tuple[str, ...] = (),
    per_distributor: bool = True,
    kind: Kind = Kind.LOOKUP,
    anyone: bool = False,
) -> Callable[[Handler], Command]:
    """Declare a command; see the module docstring."""

    def decorate(func: Handler) -> Command:
        hints = typing.get_type_hints(func, include_extras=True)
        params: list[Param] = []
        for index, parameter in enumerate(inspect.signature(func).parameters.values()):
            if index == 0:
                continue  # the context
            arg = _arg_of(hints.get(parameter.name))
            if arg is None:
                raise TypeError(f"{func.__name__}.{parameter.name} needs an Arg annotation")
            required = parameter.default is inspect.Parameter.empty
            params.append(
                Param(parameter.name, arg, required, None if required else parameter.default)
            )
        if any(p.arg.rest for p in params[:-1]):
            raise TypeError(
                f"{func.__name__}: only the last argument can take the rest of the line"
            )
        doc = inspect.getdoc(func) or ""
        help_text = doc.splitlines()[0] if doc else ""
        if not help_text:
            raise TypeError(f"{func.__name__} needs a docstring: its first line is the help")
        if "``" in help_text or "`" in help_text:
            # The first line is shown as it is: in /help, in menus of chat apps.
            raise TypeError(f"{func.__name__}: the help line is plain text, no markup")
        return Command(
            path=tuple(path),
            handler=func,
            params=tuple(params),
            role=role,
            help=help_text,
            example=example,
            flags=frozenset(flags),
            per_distributor=per_distributor,
            kind=kind,
            anyone=anyone,
        )

    return decorate
