"""Commands declared once: ``@command`` turns an async function into a ``Command`` value.

The function's parameters (after the context) are the command's arguments: their annotations say
how text is converted, their defaults make them optional, and the signature is the usage line.
The first line of the docstring is the help text. Modelled on discord.py's ``ext.commands``.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from bot.errors import UsageError
from bot.roles import Role
from erm.errors import InvalidInputError
from erm.service import MAX_DAYS, MAX_HISTORY, MIN_DAYS, check_item_ref

_DAYS = re.compile(r"^(\d{1,6})\s*(d|day|days)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Arg:
    """How one argument is read from text. ``rest`` takes everything left on the line."""

    convert: Callable[[str], Any]
    rest: bool = False


def _item(text: str) -> str:
    try:
        return check_item_ref(text)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None


def _days(text: str) -> int:
    match = _DAYS.match(text.strip())
    if not match:
        raise ValueError(f"days must be a number like 30 or 30d, not {text[:20]!r}")
    days = int(match.group(1))
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise ValueError(f"days must be from {MIN_DAYS} to {MAX_DAYS}, not {days}")
    return days


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_HISTORY:
        raise ValueError(f"the count must be a number from 1 to {MAX_HISTORY}")
    return int(text)


def _word(text: str) -> str:
    if len(text) > 100:
        raise ValueError("that is too long")
    return text


def _text(text: str) -> str:
    if len(text) > 200:
        raise ValueError(f"the text is too long ({len(text)} characters, at most 200)")
    return text


ItemRef = Annotated[str, Arg(_item)]
Days = Annotated[int, Arg(_days)]
Count = Annotated[int, Arg(_count)]
Word = Annotated[str, Arg(_word)]
Text = Annotated[str, Arg(_text, rest=True)]


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
    kind: str = "lookup"  # lookup | code | admin | meta: picks the rate limit
    anyone: bool = False  # runs for users without any role (onboarding: /start)

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def usage(self) -> str:
        parts = [f"/{self.name}", *(p.usage for p in self.params)]
        parts += [f"[--{flag}]" for flag in sorted(self.flags)]
        return " ".join(parts)


def command(
    *path: str,
    role: Role,
    example: str,
    flags: tuple[str, ...] = (),
    per_distributor: bool = True,
    kind: str = "lookup",
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
