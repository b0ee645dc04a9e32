"""Fault injection: the failures a client of ERM must survive, on demand and reproducibly.

A :class:`FaultConfig` is plain mutable data (set from CLI flags, from ``POST /_sandbox/faults`` or
directly in a test); :class:`FaultInjector` turns it into per-request decisions with a seeded RNG so
a benchmark run with ``error_rate=0.1`` fails the same requests every time. The ``*_next`` counters
are consumed one request (or one applied code mutation) at a time. Faults apply to ``/graphql``
only; ``/_sandbox/*`` always answers.

What a client sees, over real HTTP (``serve``) and in-process (``httpx.ASGITransport``):

- error: HTTP 503 with a JSON ``errors`` body, in both cases; nothing was executed.
- drop: over HTTP the status line and headers arrive, then the socket closes, and httpx raises
  ``RemoteProtocolError``. In-process the app raises :class:`ConnectionDroppedError`, which *is* an
  ``httpx.RemoteProtocolError``, so the same ``except`` clause catches both.
- hang: the answer is held for ``hang_seconds`` or until the client disconnects. ASGITransport
  applies no httpx timeouts, so in-process callers must bound the call themselves (e.g.
  ``asyncio.timeout``); over HTTP the client's read timeout fires as usual.
- ``*_after_mutation_next`` and ``odd_answer_next`` fire only on requests that actually issued a
  code (a refused mutation or a query leaves the counter alone), so the code always exists when
  the answer is lost or odd.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import random
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx


@dataclass(slots=True)
class FaultConfig:
    """What the sandbox should get wrong; all zero means a healthy server."""

    latency_ms: float = 0.0
    """Added before answering every GraphQL request."""
    error_rate: float = 0.0
    """Share (0..1) of GraphQL requests answered HTTP 503 instead of being executed."""
    fail_next: int = 0
    """The next N GraphQL requests are answered HTTP 503 (a 5xx burst)."""
    drop_rate: float = 0.0
    """Share (0..1) of GraphQL requests whose connection is dropped before execution."""
    drop_next: int = 0
    """The next N GraphQL requests have their connection dropped before execution."""
    hang_after_mutation_next: int = 0
    """The next N requests that issue a code are applied, then their answer hangs."""
    drop_after_mutation_next: int = 0
    """The next N requests that issue a code are applied, then their connection is dropped."""
    hang_seconds: float = 30.0
    """How long a hanging answer waits (or until the client goes away)."""
    seed: int = 0
    """Seed of the RNG behind ``error_rate`` and ``drop_rate``."""
    commit_delay_seconds: float = 0.0
    """A code event shows in history only this long after its mutation ran (a gateway whose
    services commit late): reconciliation must not read an empty history as "nothing issued"."""
    description_mode: str = "verbatim"
    """What ERM keeps of a code's description: ``verbatim``, ``truncate`` (to
    ``description_max_chars``) or ``drop`` (stored as null). Nothing public shows which is true."""
    description_max_chars: int = 24
    """The length ``description_mode=truncate`` keeps."""
    odd_answer_next: int = 0
    """The next N requests that issue a code are applied, then answered 200 with ``odd_answer``."""
    odd_answer: str = "bad_enum"
    """``bad_enum`` (codeType ERM's schema does not list), ``data_and_errors`` (the code plus an
    ``errors`` entry), ``no_digits`` (codeDec ``*#``) or ``wrong_type`` (another code type)."""
    stuck_cursor: bool = False
    """Every list answers ``hasNextPage: true`` and one ``endCursor``, whatever ``after`` is."""
    ignore_first: bool = False
    """Every list answers all of its nodes, whatever ``first`` asks for."""
    introspection: bool = True
    """Whether ``__schema`` / ``__type`` queries are allowed (production may switch them off)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial JSON object; unknown keys or bad values change nothing."""
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            spec = _FIELDS.get(key)
            if spec is None:
                raise ValueError(f"unknown fault setting {key!r}")
            if spec is bool:
                if not isinstance(value, bool) and value not in (0, 1):
                    raise ValueError(f"{key} must be true or false")
                checked[key] = bool(value)
                continue
            if spec is str:
                allowed = _CHOICES[key]
                if value not in allowed:
                    raise ValueError(f"{key} must be one of {', '.join(allowed)}")
                checked[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            if spec is int and value != int(value):
                raise ValueError(f"{key} must be a whole number")
            if value < 0:
                raise ValueError(f"{key} must not be negative")
            if key.endswith("_rate") and value > 1:
                raise ValueError(f"{key} must be between 0 and 1")
            checked[key] = spec(value)
        for key, value in checked.items():
            setattr(self, key, value)


_KINDS: dict[object, type] = {"int": int, int: int, "bool": bool, bool: bool, "str": str, str: str}
_FIELDS: dict[str, type] = {
    f.name: _KINDS.get(f.type, float) for f in dataclasses.fields(FaultConfig)
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "description_mode": ("verbatim", "truncate", "drop"),
    "odd_answer": ("bad_enum", "data_and_errors", "no_digits", "wrong_type"),
}


class Fault(Enum):
    """What to do with one request."""

    NONE = "none"
    ERROR = "error"
    DROP = "drop"
    HANG = "hang"
    ODD_ANSWER = "odd_answer"


class ConnectionDroppedError(httpx.RemoteProtocolError):
    """Raised inside the ASGI app to break the connection on purpose.

    Over real HTTP uvicorn has already sent the status line and headers, so it closes the socket
    mid-response and the client sees ``httpx.RemoteProtocolError``. In-process,
    ``httpx.ASGITransport`` re-raises app exceptions, and because this one *is* an
    ``httpx.RemoteProtocolError`` the caller sees the same exception family either way.
    """

    def __init__(self, message: str = "connection dropped by the ERM sandbox") -> None:
        super().__init__(message)


class FaultInjector:
    """Per-request fault decisions from a :class:`FaultConfig`, with a seeded RNG.

    The config is passed in on every call rather than held, so replacing ``state.faults`` with a
    new object just works; the RNG restarts whenever the config's seed changes.
    """

    def __init__(self) -> None:
        self._rng: random.Random | None = None
        self._seed: int | None = None

    def restart(self) -> None:
        """Start the random sequence again from the seed (after a reset or a new setting)."""
        self._rng = None

    def _chance(self, cfg: FaultConfig, rate: float) -> bool:
        if rate <= 0:
            return False
        if self._rng is None or self._seed != cfg.seed:
            self._rng = random.Random(cfg.seed)
            self._seed = cfg.seed
        return self._rng.random() < rate

    def before_execution(self, cfg: FaultConfig) -> Fault:
        """Decide whether the request is refused (503) or dropped before anything runs."""
        if cfg.fail_next > 0:
            cfg.fail_next -= 1
            return Fault.ERROR
        if self._chance(cfg, cfg.error_rate):
            return Fault.ERROR
        if cfg.drop_next > 0:
            cfg.drop_next -= 1
            return Fault.DROP
        if self._chance(cfg, cfg.drop_rate):
            return Fault.DROP
        return Fault.NONE

    @staticmethod
    def after_code_issued(cfg: FaultConfig) -> Fault:
        """Decide what happens to the answer of a request that has just issued a code."""
        if cfg.hang_after_mutation_next > 0:
            cfg.hang_after_mutation_next -= 1
            return Fault.HANG
        if cfg.drop_after_mutation_next > 0:
            cfg.drop_after_mutation_next -= 1
            return Fault.DROP
        if cfg.odd_answer_next > 0:
            cfg.odd_answer_next -= 1
            return Fault.ODD_ANSWER
        return Fault.NONE


def add_fault_arguments(
    parser: argparse.ArgumentParser, short: Mapping[str, str] | None = None
) -> None:
    """Add one ``--fault-...`` flag per :class:`FaultConfig` field to a CLI parser, explained by
    the field's own docstring; ``short``: field -> another spelling of its flag."""
    group = parser.add_argument_group(
        "fault injection", "What the sandbox gets wrong on purpose (all off by default)."
    )
    docs = _field_docs()
    for name, kind in _FIELDS.items():
        flags = [
            f"--fault-{name.replace('_', '-')}",
            *([short[name]] if short and name in short else []),
        ]
        explained = docs.get(name, name.replace("_", " "))
        if kind is bool:
            group.add_argument(
                *flags,
                dest=f"fault_{name}",
                type=_flag,
                default=None,
                metavar="0|1",
                help=explained,
            )
            continue
        group.add_argument(
            *flags,
            dest=f"fault_{name}",
            type=kind,
            default=None,
            choices=_CHOICES.get(name),
            metavar="/".join(_CHOICES[name]) if name in _CHOICES else "N",
            help=explained,
        )


def _field_docs() -> dict[str, str]:
    """Each :class:`FaultConfig` field's docstring as one line of help (its source is the one
    place that says what a fault does)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(FaultConfig)))
    except (OSError, TypeError):  # no source (a frozen build): the flags still work
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for field_, doc in itertools.pairwise(body):
        if (
            isinstance(field_, ast.AnnAssign)
            and isinstance(field_.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            text = " ".join(doc.value.value.replace("``", "").split())
            docs[field_.target.id] = text.replace("%", "%%")  # argparse formats help with %
    return docs


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("expected 0 or 1")


def faults_from_arguments(args: argparse.Namespace) -> FaultConfig:
    """The :class:`FaultConfig` described by flags added with :func:`add_fault_arguments`."""
    changes = {
        name: getattr(args, f"fault_{name}")
        for name in _FIELDS
        if getattr(args, f"fault_{name}", None) is not None
    }
    config = FaultConfig()
    config.update(changes)
    return config
