"""Long replies cut into messages that fit a platform's limit, between lines where possible.

Shared by the renderers whose messages are marked-up text (Telegram's HTML, WhatsApp's own
markup): each gives its escape function and how it counts length. A line is raw text plus how to
wrap its escaped form (bold, code...); only a line longer than a whole message is cut inside,
between characters of its raw text, each piece wrapped again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


def _same(escaped: str) -> str:
    return escaped


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a message: raw text and how to wrap its escaped form."""

    text: str
    wrap: Callable[[str], str] = _same


@dataclass(frozen=True, slots=True)
class Layout:
    """How a platform escapes text and counts its length."""

    escape: Callable[[str], str]
    length: Callable[[str], int]

    def render(self, line: Line, text: str | None = None) -> str:
        return line.wrap(self.escape(line.text if text is None else text))

    def parts(self, lines: Iterable[Line | None], limit: int) -> list[str]:
        """The lines (``None``: a blank line between sections) as messages of at most
        ``limit``, cut between lines; no part starts or ends with a blank line."""
        parts: list[str] = []
        current: list[str] = []
        size = 0
        for line in lines:
            for piece in [""] if line is None else self._fit(line, limit):
                extra = self.length(piece) + (1 if current else 0)
                if current and size + extra > limit:
                    parts.append(_join(current))
                    current, size = [], 0
                    extra = self.length(piece)
                if not current and not piece:
                    continue  # no blank line at the top of a part
                current.append(piece)
                size += extra
        if current:
            parts.append(_join(current))
        return [part for part in parts if part]

    def _fit(self, line: Line, limit: int) -> list[str]:
        """``line`` in pieces of at most ``limit``; cut inside only when it must be."""
        whole = self.render(line)
        if self.length(whole) <= limit:
            return [whole]
        overhead = self.length(self.render(line, ""))
        pieces: list[str] = []
        chunk: list[str] = []
        size = overhead
        for char in line.text:
            cost = self.length(self.escape(char))
            if chunk and size + cost > limit:
                pieces.append(self.render(line, "".join(chunk)))
                chunk, size = [], overhead
            chunk.append(char)
            size += cost
        if chunk:
            pieces.append(self.render(line, "".join(chunk)))
        return pieces


def _join(lines: list[str]) -> str:
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)
