"""Keep the bot token out of log lines.

The token is part of every Bot API URL (``.../bot<token>/sendMessage``), and libraries log those
URLs: httpx at INFO for every request, PTB at DEBUG when it builds a ``Bot``, and PTB's
``InvalidToken`` message quotes the token. A filter on those libraries' loggers replaces the token
in the message, its arguments and any formatted traceback before a handler sees the record.
"""

from __future__ import annotations

import logging
import threading

LIBRARIES = ("telegram", "httpx", "httpcore", "adapters.telegram")
MASK = "<telegram-token>"


class TokenFilter(logging.Filter):
    """Replaces every registered token in a record; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self._tokens: set[str] = set()
        self._lock = threading.Lock()

    def add(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def redact(self, text: str) -> str:
        for token in self._tokens:
            if token in text:
                text = text.replace(token, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._tokens:
            return True
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            formatted = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(formatted)
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


TOKEN_FILTER = TokenFilter()


def protect(token: str) -> None:
    """Redact ``token`` from the log records of the Telegram stack (idempotent)."""
    TOKEN_FILTER.add(token)
    names = set(LIBRARIES)
    names.update(
        name
        for name in logging.root.manager.loggerDict
        if name.split(".")[0] in {"telegram", "httpx", "httpcore"}
        or name.startswith("adapters.telegram")
    )
    for name in names:
        logging.getLogger(name).addFilter(TOKEN_FILTER)
