"""Keeping a sandbox's changes in a file, so a restarted sandbox still lists the codes it issued.

A client that keeps its own record of issued codes (the bot's database) must never hold a code the
sandbox has forgotten. The seed data is deterministic (:mod:`.seed`), so only what changed since
seeding is kept: for each changed item, its code generator's counters and the code events added
after the seeded ones, plus the id counter (a new event must not reuse an id). :func:`persisting`
writes the file before any answer starts, so whatever a client has seen is on disk first.

The file is JSON, written whole to a temporary name and renamed over the old one: a crash leaves
either the old or the new file, never half of one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from erm.sandbox.model import CodeEvent, CodeGenerator, CodeType
from erm.sandbox.state import SandboxState

__all__ = ["SavedStateError", "StateFile", "persisting"]

FORMAT = 1
"""Bumped when the file's layout changes; a file of another format is refused, not guessed at."""
_GENERATOR_FIELDS = tuple(f.name for f in dataclasses.fields(CodeGenerator) if f.name != "events")
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(CodeEvent) if f.name != "code_generator")


_Changes = tuple[dict[str, Any], list[dict[str, Any]]]
"""One item's saved generator fields and the code events added since seeding."""


class SavedStateError(Exception):
    """The file does not fit this sandbox (unreadable, another seed or format, unknown items)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Seeded:
    """One item's generator as seeding left it: what later counts as a change."""

    events: int
    generator: tuple[Any, ...]


class StateFile:
    """The changes of one sandbox ``state`` since seeding, kept at ``path``.

    Build it on a freshly seeded state: what the state holds then is the baseline every save
    compares against.
    """

    def __init__(self, state: SandboxState, path: Path) -> None:
        self.state = state
        self.path = path
        self._seeded = {
            item_id: _seeded(item.code_generator) for item_id, item in state.items.items()
        }
        self._written: bytes | None = None
        self._lock = asyncio.Lock()

    # -- reading ----------------------------------------------------------------------------------

    def restore(self) -> int:
        """Apply the saved changes, if the file exists; returns how many code events came back.

        Nothing is applied unless the whole file fits: raises :class:`SavedStateError` otherwise.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise SavedStateError(f"cannot read {self.path}: {exc.strerror}") from None
        id_counter, changes = self._parse(raw)
        restored = 0
        for item_id, (fields, events) in changes.items():
            generator = self.state.items[item_id].code_generator
            for name, value in fields.items():
                setattr(generator, name, value)
            for event in events:
                generator.events.append(CodeEvent(code_generator=generator, **event))
            restored += len(events)
        # The state's ids count on from here: a new event never takes a restored one's id.
        self.state._id_counter = max(self.state._id_counter, id_counter)
        self._written = raw
        return restored

    def _parse(self, raw: bytes) -> tuple[int, dict[str, _Changes]]:
        try:
            saved = json.loads(raw)
            if saved.get("format") != FORMAT:
                raise SavedStateError(f"{self.path} is of another format ({saved.get('format')})")
            if saved.get("seed") != self.state.seed:
                raise SavedStateError(
                    f"{self.path} holds the sandbox of seed {saved.get('seed')}, "
                    f"not {self.state.seed}"
                )
            changes = {
                item_id: self._item_changes(item_id, change)
                for item_id, change in saved["items"].items()
            }
            return int(saved["id_counter"]), changes
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SavedStateError(f"{self.path} is not a saved sandbox ({exc!r})") from None

    def _item_changes(self, item_id: str, change: dict[str, Any]) -> _Changes:
        if item_id not in self._seeded:
            raise SavedStateError(f"{self.path} names an item this sandbox has not: {item_id}")
        fields = change["generator"]
        if set(fields) != set(_GENERATOR_FIELDS):
            raise SavedStateError(f"{self.path}: the saved generator of {item_id} does not fit")
        events = []
        for event in change["events"]:
            if set(event) != set(_EVENT_FIELDS):
                raise SavedStateError(f"{self.path}: a saved code event of {item_id} does not fit")
            events.append(event | {"code_type": CodeType(event["code_type"])})
        return fields, events

    # -- writing ----------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The file's content for the state as it is now: every item changed since seeding."""
        items: dict[str, Any] = {}
        for item_id, item in self.state.items.items():
            generator = item.code_generator
            seeded = self._seeded.get(item_id)
            if seeded is not None and _seeded(generator) == seeded:
                continue
            added = generator.events[seeded.events if seeded is not None else 0 :]
            items[item_id] = {
                "generator": {name: getattr(generator, name) for name in _GENERATOR_FIELDS},
                "events": [_event(event) for event in added],
            }
        saved = {
            "format": FORMAT,
            "seed": self.state.seed,
            "id_counter": self.state._id_counter,
            "items": items,
        }
        return json.dumps(saved, indent=1, sort_keys=True).encode()

    def save(self) -> None:
        """Write the state now (at start, so the file exists even before the first change)."""
        data = self.snapshot()
        _write(self.path, data)
        self._written = data

    async def save_if_changed(self) -> None:
        """Write the state if it differs from what was last written; writes keep their order."""
        async with self._lock:
            data = self.snapshot()
            if data != self._written:
                await asyncio.to_thread(_write, self.path, data)
                self._written = data


def persisting(app: ASGIApp, saved: StateFile) -> ASGIApp:
    """``app`` with ``saved`` written before each answer starts, and again after each request.

    Before the answer: a client never sees a code that is not on disk. After the request: a code
    whose answer was dropped (an injected fault) was still made, and is kept all the same.
    """

    async def app_saving(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_saved(message: Message) -> None:
            if message["type"] == "http.response.start":
                await saved.save_if_changed()
            await send(message)

        try:
            await app(scope, receive, send_saved)
        finally:
            await saved.save_if_changed()

    return app_saving


def _seeded(generator: CodeGenerator) -> _Seeded:
    return _Seeded(
        len(generator.events), tuple(getattr(generator, name) for name in _GENERATOR_FIELDS)
    )


def _event(event: CodeEvent) -> dict[str, Any]:
    fields = {name: getattr(event, name) for name in _EVENT_FIELDS}
    fields["code_type"] = event.code_type.value
    fields["triggers"] = list(event.triggers)
    return fields


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all; readable by its owner only (it holds the codes the sandbox issued)."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
