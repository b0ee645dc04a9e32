"""The console adapter: a REPL (and a script runner) over the same Dispatcher as Slack and Telegram.

A line may start with ``@name`` to run as the console user ``name`` (``@agent /code days ...``),
and in scripts with ``!`` to say the command is expected to be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bot.dispatch import Dispatcher
from bot.messages import Identity, Reply, Request, Tone

PLATFORM = "console"
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
    out.extend(style(f"  [{b.label}: {b.value}]", _DIM) for b in reply.buttons)
    return "\n".join(out)


@dataclass
class Console:
    dispatcher: Dispatcher
    user: str = "admin"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    color: bool = False
    session: str = field(default_factory=lambda: secrets.token_hex(4))
    sequence: int = 0

    def __post_init__(self) -> None:
        # Messages the core sends later (a settled code, an approval) print here too.
        self.dispatcher.core.notifiers.setdefault(PLATFORM, self)

    async def send_private(self, user_id: str, reply: Reply) -> None:
        print(f"[to {user_id}]", render(reply, color=self.color), sep="\n", file=self.out)

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        self.sequence += 1
        print(f"[in {chat_id}]", render(reply, color=self.color), sep="\n", file=self.out)
        return f"{PLATFORM}:card:{self.sequence}"

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
            identity=Identity(PLATFORM, user, user),
            text=text,
            request_key=f"{PLATFORM}:{self.session}:{self.sequence}",
            chat_id=f"{PLATFORM}:{user}",
        )
        reply = await self.dispatcher.handle(request)
        print(render(reply, color=self.color), file=self.out, flush=True)
        return reply

    async def script(self, lines: Iterable[str]) -> int:
        """Run lines in order; returns how many did not turn out as expected."""
        failures = 0
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
