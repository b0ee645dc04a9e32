"""The dispatcher end to end: permissions, idempotency, parsing quirks, distributors, the audit."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from bot_harness import ROLES, Bot, BotFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.console import Console
from bot.commands import COMMANDS
from bot.core import Limits
from bot.dispatch import Dispatcher
from bot.messages import Tone
from bot.registry import Command
from bot.roles import Role
from erm.sandbox import OPEN_ACP1_OEM_ID

CODE_DAYS = f"/code days {OPEN_ACP1_OEM_ID} 30"
ALL = [pytest.param(c, id=c.name.replace(" ", "-")) for c in COMMANDS]
GUARDED = [pytest.param(c, id=c.name.replace(" ", "-")) for c in COMMANDS if not c.anyone]


# -- 1. permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES, ids=[r.label for r in ROLES])
@pytest.mark.parametrize("command", ALL)
async def test_command_allowed_iff_role_is_high_enough(
    bot: Bot, command: Command, role: Role
) -> None:
    reply = await bot.say(role.label, command.example)
    refusal = f"needs the {command.role.label} role"
    if role >= command.role:
        assert refusal not in reply.text()
    else:
        assert refusal in reply.text()
        assert reply.tone is Tone.WARNING


@pytest.mark.parametrize("command", GUARDED)
async def test_user_without_grant_gets_access_instructions_and_is_audited(
    bot: Bot, command: Command
) -> None:
    reply = await bot.say("stranger", command.example)
    assert "/grant console:stranger" in reply.text()
    assert reply.codes == ()
    records = await bot.audit.recent(user=("console", "stranger"))
    assert [r.outcome for r in records] == ["denied"]


# -- 2. declarations -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ALL)
def test_every_command_has_help_and_a_valid_name(command: Command) -> None:
    assert command.help.strip()
    assert re.fullmatch(r"[a-z0-9_]{1,32}", command.path[0])


# -- 3. idempotency ------------------------------------------------------------------------------


async def test_same_request_key_twice_runs_once(any_bot: Bot) -> None:
    first = await any_bot.say("agent", CODE_DAYS, key="k-1")
    second = await any_bot.say("agent", CODE_DAYS, key="k-1")
    assert first.codes
    assert second == first
    assert any_bot.transport.calls["GenerateDaysCode"] == 1


async def test_concurrent_sends_with_the_same_key_make_one_code(any_bot: Bot) -> None:
    before = any_bot.code_events(OPEN_ACP1_OEM_ID)
    replies = await asyncio.gather(
        *(any_bot.say("agent", CODE_DAYS, key="same") for _ in range(10))
    )
    assert any_bot.code_events(OPEN_ACP1_OEM_ID) == before + 1
    assert sum(1 for r in replies if r.codes) >= 1
    assert any_bot.transport.calls["GenerateDaysCode"] == 1


async def test_concurrent_sends_with_different_keys_make_one_code(any_bot: Bot) -> None:
    before = any_bot.code_events(OPEN_ACP1_OEM_ID)
    replies = await asyncio.gather(*(any_bot.say("agent", CODE_DAYS) for _ in range(10)))
    assert any_bot.code_events(OPEN_ACP1_OEM_ID) == before + 1
    keypads = {r.codes[0].keypad if r.codes else None for r in replies}
    assert len(keypads) == 1
    assert None not in keypads


# -- 4. --again and /resend ----------------------------------------------------------------------


async def test_again_issues_a_second_code(bot: Bot) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)
    first = await bot.say("agent", CODE_DAYS)
    repeat = await bot.say("agent", CODE_DAYS)
    again = await bot.say("agent", CODE_DAYS + " --again")
    assert repeat.codes == first.codes
    assert repeat.tone is Tone.INFO
    assert again.codes
    assert again.codes != first.codes
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before + 2


async def test_resend_shows_the_last_code_without_a_mutation(bot: Bot) -> None:
    issued = await bot.say("agent", CODE_DAYS)
    mutations = dict(bot.transport.calls)
    resent = await bot.say("agent", f"/resend {OPEN_ACP1_OEM_ID}")
    assert resent.codes == issued.codes
    after = bot.transport.calls
    for name in ("GenerateDaysCode", "GenerateFreeCode", "GenerateResetCode", "SignInClient"):
        assert after[name] == mutations.get(name, 0)


# -- 5. parsing through the dispatcher -----------------------------------------------------------


async def test_unknown_command_suggests_the_closest(bot: Bot) -> None:
    reply = await bot.say("agent", f"/cdoe days {OPEN_ACP1_OEM_ID} 30")
    assert "Did you mean /code?" in reply.text()


async def test_wrong_arguments_show_usage_and_example(bot: Bot) -> None:
    reply = await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} lots")
    assert "Usage:" in reply.text()
    assert "Example:" in reply.text()
    assert not reply.codes


async def test_long_dash_counts_as_double_dash(bot: Bot) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)
    first = await bot.say("agent", CODE_DAYS)
    again = await bot.say("agent", CODE_DAYS + " \u2014again")
    assert again.codes
    assert again.codes != first.codes
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before + 2


async def test_bot_suffix_on_command_is_ignored(bot: Bot) -> None:
    reply = await bot.say("agent", f"/code@mybot days {OPEN_ACP1_OEM_ID} 30")
    assert reply.codes
    assert reply.tone is Tone.OK


async def test_days_with_d_suffix_accepted(bot: Bot) -> None:
    reply = await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 30d")
    assert reply.codes
    assert reply.title is not None
    assert reply.title.startswith("30-day code")


# -- 6. several distributors ---------------------------------------------------------------------


SUNBRIGHT_ITEM = "SHSC2407000001"


async def test_multi_distributor_user_must_choose(multi_bot: Bot) -> None:
    await multi_bot.grant("multi", Role.VIEWER)
    await multi_bot.grant("multi", Role.VIEWER, "sunbright")
    reply = await multi_bot.say("multi", f"/history {SUNBRIGHT_ITEM}")
    assert "several distributors" in reply.text()


async def test_multi_distributor_user_with_dist_flag(multi_bot: Bot) -> None:
    await multi_bot.grant("multi", Role.VIEWER)
    await multi_bot.grant("multi", Role.VIEWER, "sunbright")
    reply = await multi_bot.say("multi", f"/history {SUNBRIGHT_ITEM} --dist sunbright")
    assert reply.tone in (Tone.OK, Tone.INFO), reply.text()
    assert SUNBRIGHT_ITEM in reply.text()


async def test_multi_distributor_user_with_default(multi_bot: Bot) -> None:
    await multi_bot.grant("multi", Role.VIEWER)
    await multi_bot.grant("multi", Role.VIEWER, "sunbright")
    used = await multi_bot.say("multi", "/use sunbright")
    assert used.tone is Tone.OK, used.text()
    reply = await multi_bot.say("multi", f"/history {SUNBRIGHT_ITEM}")
    assert reply.tone in (Tone.OK, Tone.INFO), reply.text()
    assert SUNBRIGHT_ITEM in reply.text()


# -- 7. anything typed gets a reply --------------------------------------------------------------


WORDS = sorted({c.path[0] for c in COMMANDS} | {" ".join(c.path) for c in COMMANDS})
TEXTS = st.one_of(
    st.text(max_size=60),
    st.builds(lambda c, a: f"/{c} {a}", st.sampled_from(WORDS), st.text(max_size=40)),
    st.builds(
        lambda c, a, f: f"/{c} {a} {f}",
        st.sampled_from(WORDS),
        st.sampled_from([OPEN_ACP1_OEM_ID, "TEST2503000017", "x", "30", "acme", "console:x"]),
        st.sampled_from(["", "--again", "--dist acme", "--page 2", "—page=x", "30d", "--dist"]),
    ),
)


@settings(
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(typed=TEXTS)
async def test_any_text_gets_a_reply_and_erm_never_sees_bad_input(
    fuzz_bot: Bot, typed: str
) -> None:
    reply = await fuzz_bot.say("admin", typed, key=uuid.uuid4().hex)
    assert reply.title
    assert fuzz_bot.recorder.rejections == []


@pytest.fixture
async def fuzz_bot(make_bot: BotFactory, bot_engine: AsyncEngine) -> Bot:
    big = 10**9
    return await make_bot(
        bot_engine,
        limits=Limits(
            codes_per_user_hour=big, codes_per_distributor_hour=big, lookups_per_user_minute=big
        ),
    )


# -- 8. the demo script and the audit chain ------------------------------------------------------


DEMO_SCRIPT = [
    "/whoami",
    "/help",
    CODE_DAYS + " cash 500",
    CODE_DAYS + " cash 500",
    f"/history {OPEN_ACP1_OEM_ID}",
    f"/resend {OPEN_ACP1_OEM_ID}",
    "/fleet",
    "/items --page 2",
    f"/account {OPEN_ACP1_OEM_ID}",
    "/audit",
]


async def test_demo_script_runs_and_audit_chain_detects_tampering(bot: Bot) -> None:
    out = io.StringIO()
    console = Console(Dispatcher(bot.core), user="admin", out=out)
    assert await console.script(DEMO_SCRIPT) == 0, out.getvalue()
    verdict = await bot.audit.verify()
    assert verdict.ok
    assert verdict.rows == len(DEMO_SCRIPT)
    async with bot.engine.begin() as connection:
        # The append-only trigger stops mistakes, not someone who owns the database file.
        await connection.execute(text("DROP TRIGGER bot_audit_log_no_update"))
        await connection.execute(text("UPDATE bot_audit_log SET outcome = 'denied' WHERE id = 3"))
    tampered = await bot.audit.verify()
    assert not tampered.ok
    assert tampered.first_bad_id == 3


def _demo(tmp_path: Path, lines: list[str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.txt"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERM_")}
    erm_bot = Path(sys.executable).with_name("erm-bot")
    return subprocess.run(  # noqa: S603 - our own entry point
        [str(erm_bot), "demo", "--script", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_command_runs_a_script(tmp_path: Path) -> None:
    result = _demo(tmp_path, [*DEMO_SCRIPT, "!@agent /users"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_demo_command_fails_on_an_unexpected_refusal(tmp_path: Path) -> None:
    result = _demo(tmp_path, ["/whoami", "/nosuchcommand"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "did not go as expected" in result.stderr


async def test_at_most_the_configured_number_of_requests_are_worked_on_at_once(
    make_bot: BotFactory, bot_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await make_bot(bot_engine, limits=Limits(concurrency=2))
    erm = bot.core.erm
    history = erm.code_history
    release = asyncio.Event()
    running = peak = 0

    async def held(*args: object, **kwargs: object) -> object:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
            return await history(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            running -= 1

    monkeypatch.setattr(erm, "code_history", held)
    sends = [
        asyncio.create_task(bot.say("agent", f"/history {OPEN_ACP1_OEM_ID}")) for _ in range(5)
    ]
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert (running, peak) == (2, 2)  # the other three wait their turn

    release.set()
    replies = await asyncio.gather(*sends)
    assert peak == 2
    assert all(reply.tone is not Tone.ERROR for reply in replies), replies
