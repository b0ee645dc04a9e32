"""Text -> (Command, arguments, flags), or a ``UserError`` that says exactly what to type.

What phones do to text is undone first: a long dash (em or en dash) typed for ``--`` counts
as ``--``, curly quotes count as straight ones, and ``/code@mybot`` (a command addressed to one
bot in a group) is ``/code``.
``/erm X`` (the umbrella command of platforms that give an app one slash command) is ``/X``
everywhere.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import UnknownCommandError, UsageError
from bot.messages import visible
from bot.registry import Command, Retype

MAX_TEXT = 1000
_DASHES = str.maketrans({"\u2014": "--", "\u2013": "--", "\u2012": "--", "\u2212": "-"})
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
# Flags every per-distributor command accepts, and whether they take a value.
_COMMON_FLAGS = {"dist": True}
_VALUE_FLAGS = {"dist", "page"}
UMBRELLA = "erm"


@dataclass(frozen=True, slots=True)
class Parsed:
    command: Command
    args: dict[str, Any]
    flags: dict[str, str | bool] = field(default_factory=dict)

    @property
    def audited_args(self) -> dict[str, Any]:
        """``args`` as the audit trail keeps them: a secret argument (an invite code, usable
        until redeemed) only as a mark that one was given."""
        secret = {p.name for p in self.command.params if p.arg.secret}
        return {k: ("(given)" if k in secret else v) for k, v in self.args.items()}

    @property
    def distributor(self) -> str | None:
        value = self.flags.get("dist")
        return value.lower() if isinstance(value, str) else None


def normalise(text: str) -> str:
    # Control characters never reach an argument, a note sent to ERM, a stored row (PostgreSQL
    # refuses NUL in text) or a chat message; nor do bidi controls and zero-width characters
    # (a note or deny reason that reads differently from what it says).
    return visible(text).translate(_DASHES).translate(_QUOTES).strip()


def tokens(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.replace('"', " ").replace("'", " ").split()


def parse(text: str, commands: Sequence[Command]) -> Parsed:
    if len(text) > MAX_TEXT:
        raise UsageError(f"That message is too long ({len(text)} characters, at most {MAX_TEXT}).")
    words = tokens(normalise(text))
    if words and words[0].lstrip("/").split("@", 1)[0].lower() == UMBRELLA:
        # The /erm umbrella, typed (or forwarded) anywhere: /erm start X = /start X
        words = [f"/{words[1].lstrip('/')}", *words[2:]] if len(words) > 1 else ["/help"]
    if not words:
        raise UsageError("Type a command, for example /help.")
    head = words[0].lstrip("/").split("@", 1)[0].lower()
    rest = words[1:]
    family = [c for c in commands if c.path[0] == head]
    if not family:
        raise UnknownCommandError(_unknown(head, commands))
    command = next((c for c in family if len(c.path) == 1), None)
    # A family with a bare command too (``/approvals``) runs it when no sub-command word follows.
    if command is None or (len(family) > 1 and rest):
        sub = rest[0].lower() if rest else ""
        chosen = next((c for c in family if len(c.path) > 1 and c.path[1] == sub), None)
        if chosen is not None:
            command, rest = chosen, rest[1:]
        else:
            subs = [c.path[1] for c in family if len(c.path) > 1]
            close = difflib.get_close_matches(sub, subs, n=1, cutoff=0.6) if sub else []
            # Not a sub-command: the bare command's argument (``/code ITEM``), unless it is a
            # word of letters close to one (``/code day``) or followed by more (``/code weeks
            # ITEM``): a sub-command mistyped, answered with what to type.
            looks_like_sub = sub.isalpha() and (bool(close) or len(rest) > 1)
            if command is None or not command.params or looks_like_sub:
                raise _no_sub(head, sub, close, rest, family)
    positional, flags = _split_flags(rest, command)
    try:
        return Parsed(command, _bind(positional, command), flags)
    except _RetypeError as error:
        raise _retyped(command, positional, flags, error) from None


def _no_sub(
    head: str, sub: str, close: list[str], rest: list[str], family: list[Command]
) -> UsageError:
    if close:
        # "/code day X 30": the command meant, ready to send (never run for them: a code cannot
        # be taken back).
        meant = " ".join([f"/{head}", close[0], *rest[1:]])
        meant = meant if len(meant) <= 120 else meant[:119] + "…"
        return UsageError(f"/{head} has no {sub[:20]!r}. Did you mean:\n{meant}")
    subs = " | ".join(c.path[1] for c in family if len(c.path) > 1)
    problem = f"/{head} needs one of: {subs}" if not sub else f"/{head} has no {sub!r}"
    examples = "\n".join(f"{c.usage}  (e.g. {c.example})" for c in family)
    return UsageError(f"{problem}.\n{examples}")


def _unknown(head: str, commands: Sequence[Command]) -> str:
    names = sorted({c.path[0] for c in commands})
    close = difflib.get_close_matches(head, names, n=1, cutoff=0.6)
    shown = head if len(head) <= 30 else head[:30] + "…"
    hint = f" Did you mean /{close[0]}?" if close else " Type /help for the list."
    return f"Unknown command /{shown}.{hint}"


def _split_flags(words: list[str], command: Command) -> tuple[list[str], dict[str, str | bool]]:
    allowed = set(command.flags) | (set(_COMMON_FLAGS) if command.per_distributor else set())
    positional: list[str] = []
    flags: dict[str, str | bool] = {}
    items = iter(words)
    for word in items:
        if not word.startswith("--") or len(word) == 2:
            positional.append(word)
            continue
        name, eq, value = word[2:].partition("=")
        name = name.lower()
        if name not in allowed:
            known = ", ".join(f"--{f}" for f in sorted(allowed)) or "none"
            raise UsageError(
                f"/{command.name} has no option --{name[:20]} (options: {known}).",
                command.usage,
                command.example,
            )
        if name in _VALUE_FLAGS:
            if not eq:
                value = next(items, "")
            if not value or value.startswith("--"):
                raise UsageError(f"--{name} needs a value.", command.usage, command.example)
            flags[name] = value
        else:
            flags[name] = True
    return positional, flags


def _bind(words: list[str], command: Command) -> dict[str, Any]:
    args: dict[str, Any] = {}
    params = command.params
    at = 0  # the next word to read
    for param in params:
        if param.arg.rest:
            text = " ".join(words[at:])
            at = len(words)
            if text:
                args[param.name] = param.convert(text, command)
            elif param.required:
                raise UsageError(f"{param.name} is missing.", command.usage, command.example)
            else:
                args[param.name] = param.default
            break
        if at < len(words):
            # A unit typed as its own word belongs to the number before it (``30 days``): it
            # must not become the start of the note, nor the note "month" of a 1-day code.
            joins = param.arg.joins
            taken = 2 if joins and at + 1 < len(words) and joins(words[at], words[at + 1]) else 1
            try:
                args[param.name] = param.convert(" ".join(words[at : at + taken]), command)
            except Retype as retype:
                raise _RetypeError(retype, at, taken) from None
            at += taken
        elif param.required:
            raise UsageError(f"{param.name} is missing.", command.usage, command.example)
        else:
            args[param.name] = param.default
    if at < len(words):
        extra = " ".join(words[at:])[:40]
        raise UsageError(f"Too many arguments: {extra}", command.usage, command.example)
    return args


class _RetypeError(Exception):
    """An argument to type differently (see ``Retype``): ``parse`` shows the whole command."""

    def __init__(self, retype: Retype, at: int, taken: int) -> None:
        super().__init__(str(retype))
        self.retype = retype
        self.at = at
        self.taken = taken


def _retyped(
    command: Command, positional: list[str], flags: dict[str, str | bool], error: _RetypeError
) -> UsageError:
    """The refusal of an argument typed in a form that is not used (``1 month``): what to type
    instead, as the exact command, with everything else as the person typed it."""
    words = [
        *positional[: error.at],
        error.retype.replacement,
        *positional[error.at + error.taken :],
    ]
    words += [
        f"--{name}" if value is True else f"--{name} {value}" for name, value in flags.items()
    ]
    typed = " ".join([f"/{command.name}", *(_quoted(word) for word in words)])
    return UsageError(f"{error.retype}.\nType: {typed}")


def _quoted(word: str) -> str:
    return shlex.quote(word) if any(ch.isspace() for ch in word) else word
