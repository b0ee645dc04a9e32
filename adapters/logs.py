"""Logging for ``erm-bot run`` and ``erm-bot doctor``: structlog over the standard library.

- Every module logs with ``logging.getLogger(__name__)`` as before; one handler on the root logger
  renders each record through structlog: JSON lines (``ERM_BOT_LOG_FORMAT=json``, for log
  collectors) or aligned, readable lines (``console``); ``auto`` picks console when standard error
  is a terminal. ``extra={...}`` fields become keys of their own.
- A request id follows a command: :func:`bind_request` puts ``request_id`` (and the platform) in
  a context variable when a platform request arrives; every log line written while handling it,
  down to the ERM call, carries it. Tasks started from there inherit it.
- No secret is written: :class:`Redactor` replaces every configured secret (platform tokens,
  signing and webhook secrets, encryption keys, the database password) and anything shaped like a
  token (Slack and Telegram tokens, JWTs such as ERM access tokens, bearer credentials, passwords
  in URLs) in the message, every field and the formatted traceback, whatever library logged it.
- No code is written either: unlock codes (9 or more digits, bare or in 3-digit keypad groups,
  ``*...#`` or not; ERM's 16-digit hex form) and invite codes (``/start CODE``, ``?start=CODE``,
  the invite alphabet's 10-character shape) become ``<code …123>`` / ``<invite>``. At DEBUG,
  python-telegram-bot and slack_sdk log whole message bodies (codes, client names): those loggers
  stay at INFO whatever the level, and the redaction holds if they log anyway. Ordinary numbers
  (times, ports, counts, dates, Slack timestamps, OEM item ids, negative chat ids) are left alone.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr
from structlog.contextvars import bind_contextvars, get_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "<redacted>"
MIN_SECRET = 4
"""Shorter configured values are not matched literally (they would mangle every line)."""

# Noisy at INFO and below: shown only when the level is DEBUG.
_CHATTY = ("httpx", "httpcore", "asyncio", "telegram.ext", "slack_bolt", "slack_sdk")
# Their DEBUG lines are message bodies (codes, invite codes, client names and phones): at most
# INFO even when the level is DEBUG. The code redaction below still covers them should one be
# turned up by hand.
_BODIES = ("telegram", "slack_bolt", "slack_sdk")
# Never below WARNING: aiosqlite's DEBUG lines repeat every SQL statement with its parameters
# (stored replies, unlock codes), which SQLAlchemy's own hide_parameters keeps out of errors.
_QUIET = ("aiosqlite",)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bxox[a-z]-[A-Za-z0-9-]{6,}"), MASK),  # Slack bot / user tokens
    (re.compile(r"\bxapp-[A-Za-z0-9-]{6,}"), MASK),  # Slack app-level tokens
    (re.compile(r"(?<![0-9])\d{5,}:[A-Za-z0-9_-]{30,}"), MASK),  # Telegram bot tokens (in URLs)
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),  # JWTs
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\g<1>{MASK}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), rf"\g<1>{MASK}@"),
)


CODE_MASK = "<code …{last}>"
INVITE_MASK = "<invite>"

# Each pattern starts with a character class (so the regex engine skips ahead fast) and checks
# what precedes its first character just after it. A token starts after no letter, digit, "_" or
# "." (1712345678.123456, a Slack timestamp, and TEST2503000017, an OEM id, are not codes), or
# after an escaped newline or tab ("\\n" in a logged repr or JSON body: the "n" is no letter).
_STARTS = r"(?:(?<![\w.]{c})|(?<=\\[nrt]{c}))"
_DIGIT_STARTS = r"(?<!telegram:\d)(?:(?<![\w.\-]\d)|(?<=\\[nrt]\d))"  # nor "-", "telegram:"
_END = r"(?![\w]|\.\d)"


def _code(match: re.Match[str]) -> str:
    """An unlock code: only its last 3 digits (what a viewer sees) stay, to match it up."""
    digits = re.sub(r"\D", "", match.group(0))
    return CODE_MASK.format(last=digits[-3:])


def _shaped(match: re.Match[str]) -> str:
    """ERM's hex form of a code (16 uppercase hex digits; request ids are lowercase), or an invite
    code (10 characters of bot.storage.invites.INVITE_ALPHABET, letters and digits: all-capital
    words such as DEPRECATED and ids such as 2345678923 are not taken for one); anything else as
    it was."""
    text = match.group(0)
    if len(text) == 16 and _HEX.fullmatch(text):
        return CODE_MASK.format(last="hex")
    if len(text) == 10 and _INVITE.fullmatch(text) and not text.isalpha() and not text.isdigit():
        return INVITE_MASK
    return text


_HEX = re.compile(r"[0-9A-F]{16}")
_INVITE = re.compile(r"[A-HJ-NP-Z2-9]{10}")

# Unlock codes: 9 digits or more, so dates (2026-12-01), times, ports and counts never match.
# "-" before the digits is a Telegram group's chat id (-1001234567890), "telegram:" a user's key.
_CODE_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    # Keypad form, however decorated: *024 413 975 593 119 504 641#, *123-456-789#, *123456789#
    (re.compile(r"\*\d{3}(?:[ -]?\d{3}){2,}(?:[ -]?\d{1,2})?#?"), _code),
    # Bare digits (024413975593119504641, 123456789) or 3-digit groups without * and #
    # (024 413 975 593 119 504 641, 123-456-789)
    (
        re.compile(r"\d" + _DIGIT_STARTS + r"(?:\d{8,}|\d{2}(?:[ -]\d{3}){2,})" + _END),
        _code,
    ),
    # Hex codes and invite codes by their shape: one scan for both.
    (re.compile(r"[0-9A-Z]" + _STARTS.format(c="[0-9A-Z]") + r"[0-9A-Z]{9,15}(?!\w)"), _shaped),
)
# Invite codes by their context, whatever their case: after /start (as typed), "start" (Slack's
# "/erm start CODE"), ?start= (a deep link) or the "Invite code" label of /invite's reply.
_INVITE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(/start(?:@\w+)?[ \t]+)[^\s'\"\\<]+"), rf"\g<1>{INVITE_MASK}"),
    (
        re.compile(r"(?i)(\bstart[ \t]+)[A-HJ-NP-Z2-9]{10}(?![A-Za-z0-9])"),
        rf"\g<1>{INVITE_MASK}",
    ),
    (re.compile(r"([?&]start=)[^\s&'\"\\<]+"), rf"\g<1>{INVITE_MASK}"),
    (
        re.compile(r"(?i:invite code)(.{1,40}?)(?<![A-Za-z0-9])[A-HJ-NP-Z2-9]{10}(?![A-Za-z0-9])"),
        rf"Invite code\g<1>{INVITE_MASK}",
    ),
)


def redact_codes(text: str) -> str:
    """``text`` with unlock codes and invite codes replaced."""
    for pattern, replacement in _CODE_PATTERNS:
        text = pattern.sub(replacement, text)
    lowered = text.lower()
    if "start" in lowered or "invite code" in lowered:  # the context patterns are slower
        for invite_pattern, invite_replacement in _INVITE_PATTERNS:
            text = invite_pattern.sub(invite_replacement, text)
    return text


class Redactor:
    """Replaces known secret values and token-shaped strings; thread-safe, never raises."""

    def __init__(self, secrets_: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(*secrets_)

    def add(self, *values: str | None) -> None:
        """Never write these values (values shorter than ``MIN_SECRET`` are ignored)."""
        fresh = {v for v in values if v and len(v) >= MIN_SECRET}
        if not fresh:
            return
        with self._lock:
            # Longest first, so a secret containing another is replaced whole.
            merged = set(self._secrets) | fresh
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return redact_codes(text)

    def clean(self, value: Any) -> Any:
        """``value`` with secrets replaced in every string inside it."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.clean(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.redact(str(value))

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        """As a structlog processor: the last step before rendering."""
        return {key: self.clean(value) for key, value in event_dict.items()}


REDACTOR = Redactor()
"""The process's redactor: :func:`configure_logging` fills it from the settings."""


class CodeFilter(logging.Filter):
    """Rewrites a standard-library record's message without its codes, before any formatter.

    The structlog chain redacts everything again (secrets, fields, tracebacks); this makes the
    record itself free of codes for whatever else reads it after our handler, at the cost of one
    cheap pass (the secret patterns are left to the chain). Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_from_structlog", False) or not isinstance(record.msg, str):
            return True  # structlog's own event dicts: its processor chain redacts them
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string: leave it to the formatter to report
            return True
        clean = redact_codes(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def settings_secrets(settings: Any) -> list[str]:
    """Every secret the settings hold: ``SecretStr`` fields, each key, the database password."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            raw = value.get_secret_value()
            found.append(raw.strip())
            found.extend(part.strip() for part in raw.split(","))
    url = getattr(settings, "erm_bot_database_url", None)
    if url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        found.append(password or "")
    return [s for s in found if s]


def _drop_copies(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Record attributes that only repeat the event (set by formatters, uvicorn's colors)."""
    for key in ("message", "color_message", "asctime"):
        event_dict.pop(key, None)
    return event_dict


def want_json(log_format: str, stream: TextIO) -> bool:
    if log_format == "json":
        return True
    if log_format == "console":
        return False
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours: replaced, not duplicated, when logging is configured again."""


def configure_logging(
    *,
    level: int = logging.INFO,
    log_format: str = "auto",
    secrets_: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every log record through structlog to ``stream`` (standard error by default).

    Other handlers on the root logger (pytest's capture, say) are left in place.
    """
    stream = stream if stream is not None else sys.stderr
    REDACTOR.add(*secrets_)
    as_json = want_json(log_format, stream)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_copies,
        timestamper,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=_colors(stream), sort_keys=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
    )
    handler = _Handler(stream)
    handler.addFilter(CodeFilter())
    handler.setFormatter(formatter)
    handler.setLevel(level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.WARNING
        )
    for name in _BODIES:
        if level <= logging.DEBUG:
            logging.getLogger(name).setLevel(logging.INFO)
        elif name not in _CHATTY:
            logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger("alembic").setLevel(
        logging.INFO if level <= logging.DEBUG else logging.WARNING
    )
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            *shared[:3],
            timestamper,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


def configure_from_settings(settings: Any, *, stream: TextIO | None = None) -> logging.Handler:
    """:func:`configure_logging` with ``ERM_BOT_LOG_LEVEL`` / ``ERM_BOT_LOG_FORMAT``."""
    return configure_logging(
        level=settings.log_level,
        log_format=settings.erm_bot_log_format,
        secrets_=settings_secrets(settings),
        stream=stream,
    )


def _colors(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


# -- request ids --------------------------------------------------------------------------------


def new_request_id() -> str:
    return secrets.token_hex(8)


def bind_request(platform: str, **fields: str | int | None) -> str:
    """Start a request's log context (a fresh ``request_id``) in the current task; returns the id.

    Tasks created afterwards inherit it; in a task that handles one request after another (a
    Telegram chat's queue) each request binds its own.
    """
    request_id = new_request_id()
    bind_contextvars(
        request_id=request_id,
        platform=platform,
        **{k: v for k, v in fields.items() if v is not None},
    )
    return request_id


def bind_request_once(platform: str, **fields: str | int | None) -> str:
    """:func:`bind_request`, unless a request id is bound already (then that one)."""
    current = get_contextvars().get("request_id")
    if isinstance(current, str):
        return current
    return bind_request(platform, **fields)


def current_request_id() -> str | None:
    value = get_contextvars().get("request_id")
    return value if isinstance(value, str) else None
