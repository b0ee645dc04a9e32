"""A sandbox's changes kept in a file: a restarted sandbox lists the codes it issued."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from support import FakeClock

from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, create_app, seed_state
from erm.sandbox.config import SandboxConfig
from erm.sandbox.model import CodeType, Item
from erm.sandbox.persist import SavedStateError, StateFile, persisting
from erm.sandbox.state import SandboxState

DAYS = """
mutation Days($in: GenerateDaysCodeInput!) {
  generateDaysCode(generateDaysCodeInput: $in) { codeDec }
}"""
SIGN_IN = """
mutation SignIn($creds: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $creds) { accessToken }
}"""


def fresh(clock: FakeClock, seed: int = 0) -> SandboxState:
    return seed_state(seed, SandboxConfig(clock=clock, token_ttl_seconds=100 * 86_400))


def open_item(state: SandboxState) -> Item:
    return state.item_by_oem_id(OPEN_ACP1_OEM_ID)


def issue(state: SandboxState, code_type: CodeType = CodeType.DAYSCODE, days: int = 30) -> str:
    acme = state.distributor_by_name(ACME.name)
    return state.generate(acme, open_item(state).id, code_type, days, "note").code_dec


def history(state: SandboxState) -> list[tuple[str, str, str, float]]:
    return [
        (e.id, e.code_dec_string, e.code_type.value, e.created_at)
        for e in state.history(open_item(state).code_generator)
    ]


def generator(state: SandboxState) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars_of(open_item(state).code_generator).items()
        if name != "events"
    }


def vars_of(instance: Any) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in instance.__slots__}


def test_a_restarted_sandbox_lists_the_codes_and_counts_on_from_them(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "sandbox.json"
    before = fresh(clock)
    saved = StateFile(before, path)
    issued = [issue(before), issue(before, CodeType.RESETCODE, 0)]
    before.increase_free_codes(before.distributor_by_name(ACME.name), open_item(before).id, 2)
    saved.save()

    after = fresh(clock)
    restored = StateFile(after, path).restore()

    assert restored == 2
    assert history(after) == history(before)
    assert [code for _, code, _, _ in history(after)[:2]] == issued[::-1]
    assert generator(after) == generator(before)
    clock.advance(60)
    assert issue(after) == issue(before)  # the same next code...
    assert history(after)[0][0] == history(before)[0][0]  # ...under the same new id


def test_a_sandbox_with_nothing_saved_starts_as_seeded(tmp_path: Path, clock: FakeClock) -> None:
    state = fresh(clock)
    seeded = history(state)

    assert StateFile(state, tmp_path / "absent.json").restore() == 0
    assert history(state) == seeded


def test_saving_keeps_only_what_changed_since_seeding(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "sandbox.json"
    state = fresh(clock)
    saved = StateFile(state, path)

    saved.save()
    untouched = json.loads(path.read_bytes())
    issue(state)
    saved.save()
    changed = json.loads(path.read_bytes())

    assert untouched["items"] == {}
    assert list(changed["items"]) == [open_item(state).id]
    assert len(changed["items"][open_item(state).id]["events"]) == 1
    assert path.stat().st_mode & 0o077 == 0  # it holds codes: its owner's only


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda saved: {**saved, "seed": 7}, "seed 7"),
        (lambda saved: {**saved, "format": 99}, "another format"),
        (lambda saved: {**saved, "items": {"0" * 24: {}}}, "names an item"),
        (lambda saved: {"format": 1, "seed": 0}, "not a saved sandbox"),
    ],
    ids=["other-seed", "other-format", "unknown-item", "incomplete"],
)
def test_a_file_that_does_not_fit_is_refused_and_nothing_is_applied(
    tmp_path: Path, clock: FakeClock, damage: Any, complaint: str
) -> None:
    path = tmp_path / "sandbox.json"
    first = fresh(clock)
    saved = StateFile(first, path)
    issue(first)
    saved.save()
    path.write_text(json.dumps(damage(json.loads(path.read_bytes()))))
    state = fresh(clock)
    seeded = history(state)

    with pytest.raises(SavedStateError, match=complaint):
        StateFile(state, path).restore()
    assert history(state) == seeded


def test_a_file_that_is_not_json_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "sandbox.json"
    path.write_bytes(b"\x00not json")

    with pytest.raises(SavedStateError, match="not a saved sandbox"):
        StateFile(fresh(clock), path).restore()


class WatchFile:
    """Outermost app: what the file held when each answer started (what a client could see)."""

    def __init__(self, app: ASGIApp, path: Path) -> None:
        self.app, self.path = app, path
        self.at_answer: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.at_answer.append(self.path.read_bytes())
            await send(message)

        await self.app(scope, receive, watched)


@pytest.fixture
def persisted(tmp_path: Path, state: SandboxState) -> WatchFile:
    saved = StateFile(state, tmp_path / "sandbox.json")
    saved.save()
    return WatchFile(persisting(create_app(state), saved), saved.path)


@pytest.fixture
async def acme_saved(persisted: WatchFile) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the persisting sandbox, signed in as acme."""
    transport = httpx.ASGITransport(app=persisted)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        creds = {"email": ACME.email, "password": ACME.password}
        signed = await http.post("/graphql", json={"query": SIGN_IN, "variables": {"creds": creds}})
        token = signed.json()["data"]["signInClient"]["accessToken"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def days_code(item: Item) -> dict[str, Any]:
    return {"query": DAYS, "variables": {"in": {"itemId": item.id, "codeDays": 30}}}


async def test_a_code_is_on_disk_before_its_answer_starts(
    acme_saved: httpx.AsyncClient, persisted: WatchFile, state: SandboxState
) -> None:
    answer = await acme_saved.post("/graphql", json=days_code(open_item(state)))

    code = answer.json()["data"]["generateDaysCode"]["codeDec"]
    assert code.encode() in persisted.at_answer[-1]
    assert code.encode() not in persisted.at_answer[0]  # the sign-in's answer: nothing yet


async def test_a_code_whose_answer_was_dropped_is_kept_all_the_same(
    acme_saved: httpx.AsyncClient, persisted: WatchFile, state: SandboxState
) -> None:
    item = open_item(state)
    state.faults.drop_after_mutation_next = 1

    with pytest.raises(httpx.RemoteProtocolError):
        await acme_saved.post("/graphql", json=days_code(item))

    newest = item.code_generator.events[-1]
    assert newest.code_dec_string.encode() in persisted.path.read_bytes()
