"""The console adapter: a REPL (and a script runner) over the same Dispatcher as Slack and Telegram.

A line may start with ``@name`` to run as the console user ``name`` (``@agent /code days ...``),
and in scripts with ``!`` to say the command is expected to be refused.

The console is a :class:`~adapters.platform.Platform` like the chat platforms (it has user ids,
grants and a notifier), except that no setting enables it: ``erm-bot console`` and
``erm-bot demo`` run it, never ``erm-bot run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute

from adapters.platform import Attached, Platform, Report
from adapters.settings import Settings
from bot.dispatch import Dispatcher
from bot.messages import Identity, Reply, Request, Tone
from bot.permissions import UserIdRule
from bot.ports import Notifier, Sent

NAME = "console"
_BOLD, _CODE, _DIM, _RED, _RESET = "\033[1m", "\033[1;30;43m", "\033[2m", "\033[31m", "\033[0m"


def render(reply: Reply, *, color: bool) -> str:
    """A reply as terminal text: the code stands out, fields line up."""

    def style(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    out: list[str] = []
    if reply.title:
        warn = reply.tone in (Tone.ERROR, Tone.WARNING)
        out.append(style(reply.title, _RED if warn else _BOLD))
    width = max((len(f.label) for f in reply.fields), default=0)
    out.extend(f"  {f.label + ':':<{width + 1}} {f.value}" for f in reply.fields)
    out.extend(f"  {line}" for line in reply.lines)
    for code in reply.codes:
        out.append("")
        out.append("    " + style(f" {code.keypad} ", _CODE))
        out.append("")
    out.extend(style(f"  {note}", _DIM) for note in reply.notes)
    # A terminal has no buttons: it shows what to type for the same effect.
    out.extend(
        style(f"  [{b.label}: {b.typed}]" if b.typed else f"  [{b.label}]", _DIM)
        for b in reply.buttons
    )
    return "\n".join(out)


@dataclass
class Console:
    dispatcher: Dispatcher
    user: str = "admin"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    color: bool = False
    session: str = field(default_factory=lambda: secrets.token_hex(4))
    sequence: int = 0

    # -- adapters.platform.Served: nothing to serve or start, and no invite link ----------------

    def routes(self) -> list[BaseRoute]:
        return []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @property
    def notifier(self) -> Notifier:
        return self

    @property
    def deep_link(self) -> None:
        return None

    def attached(self) -> Attached:
        """While it reads commands, messages the core sends later (a settled code, an approval)
        print here too: ``async with console.attached(): ...``."""
        return Attached(self.dispatcher.core, NAME, self)

    # -- Notifier --------------------------------------------------------------------------------

    async def send_private(self, user_id: str, reply: Reply) -> Sent:
        print(f"[to {user_id}]", render(reply, color=self.color), sep="\n", file=self.out)
        return Sent.NOW

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        self.sequence += 1
        print(f"[in {chat_id}]", render(reply, color=self.color), sep="\n", file=self.out)
        return f"{NAME}:card:{self.sequence}"

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        print(f"[{message_ref} now]", render(reply, color=self.color), sep="\n", file=self.out)

    async def run(self, line: str) -> Reply:
        """Run one line (``@user`` prefix allowed) and print the reply."""
        user, text = self.user, line.strip()
        if text.startswith("@"):
            head, _, text = text.partition(" ")
            user = head[1:] or self.user
        self.sequence += 1
        request = Request(
            identity=Identity(NAME, user, user),
            text=text,
            request_key=f"{NAME}:{self.session}:{self.sequence}",
            chat_id=f"{NAME}:{user}",
        )
        reply = await self.dispatcher.handle(request)
        print(render(reply, color=self.color), file=self.out, flush=True)
        return reply

    async def script(self, lines: Iterable[str]) -> int:
        """Run lines in order; returns how many did not turn out as expected."""
        failures = 0
        async with self.attached():
            for raw in lines:
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                expect_refusal = line.startswith("!")
                line = line.lstrip("!").strip()
                print(f"{self.prompt(line)}{line}", file=self.out)
                reply = await self.run(line)
                refused = reply.tone in (Tone.ERROR, Tone.WARNING)
                if refused != expect_refusal:
                    failures += 1
                    what = "was refused" if refused else "succeeded, but a refusal was expected"
                    print(f"!! line {line!r} {what}", file=self.out, flush=True)
        return failures

    def prompt(self, line: str = "") -> str:
        user = line[1:].split(" ", 1)[0] if line.startswith("@") else self.user
        return f"{user}> "

    async def repl(self) -> None:
        """Read commands until end of input; history kept in ~/.erm-bot_history when possible."""
        history = _enable_history()
        try:
            async with self.attached():
                while True:
                    try:
                        line = await asyncio.to_thread(input, self.prompt())
                    except EOFError:
                        print(file=self.out)
                        return
                    if line.strip() in {"exit", "quit"}:
                        return
                    if line.strip():
                        await self.run(line)
        finally:
            if history is not None:
                history()


def _enable_history() -> Callable[[], None] | None:
    """Line editing and history with readline where the platform has it."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Windows without pyreadline
        return None
    path = Path.home() / ".erm-bot_history"
    with contextlib.suppress(OSError):
        readline.read_history_file(path)

    def save() -> None:
        with contextlib.suppress(OSError):
            readline.write_history_file(path)

    return save


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    user: str = "admin"  # who types, unless a line starts with @name
    color: bool = False


class ConsolePlatform:
    """The terminal: one process, one person typing (as any console user)."""

    name = NAME
    # Console users are the one word typed after ``@``.
    user_ids = UserIdRule(
        re.compile(r"[A-Za-z0-9_.-]{1,64}"),
        "console users are one word of letters, digits, _ . or -, e.g. console:agent",
    )
    enabled_by = None

    def config(self, settings: Settings) -> ConsoleConfig | None:
        return None  # never served by `erm-bot run`: its own commands build it

    def describe(self, config: ConsoleConfig) -> str:
        return f"the console as {NAME}:{config.user}"

    def build(self, config: ConsoleConfig, dispatcher: Dispatcher, engine: AsyncEngine) -> Console:
        return Console(dispatcher, user=config.user, color=config.color)

    async def doctor(self, config: ConsoleConfig, report: Report) -> None:
        pass  # nothing outside this process to check


PLATFORM: Platform[ConsoleConfig] = ConsolePlatform()
