"""ERM failing under a Slack user: slow, 5xx, refused, dropped after the code, expired tokens.

Every test goes the whole way: a signed slash command to the bot's HTTP app, the Slack adapter,
the core, the ERM client over loopback to the sandbox with ``FaultConfig`` faults (or its proxy
stopped). Each checks what the user reads, how many codes ERM holds for the item (never one more
than was asked for), and the audit row the command left. ERM timeouts are 1 s here
(``fault_rig.TOTAL_TIMEOUT``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakes.slack import shown
from fakes.telegram import FakeTelegram, User
from fault_rig import MUTATIONS, TOTAL_TIMEOUT, FaultStack, SlackClient

from adapters.platform import Attached
from adapters.telegram.app import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from bot.roles import Role
from erm.models import keypad_format
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
SLOWER_THAN_TIMEOUT_MS = TOTAL_TIMEOUT * 1000 + 700


def newest_code(stack: FaultStack, oem_id: str = ITEM) -> str:
    """The keypad form of the newest code ERM holds for the item."""
    event = stack.sandbox.item_by_oem_id(oem_id).code_generator.events[-1]
    return keypad_format(event.code_dec_string)


async def outcomes(stack: FaultStack, count: int) -> list[tuple[str, str]]:
    """(command, outcome) of the newest ``count`` audit rows, oldest first."""
    return [(r.command, r.outcome) for r in reversed(await stack.audit(count))]


async def warm_up(stack: FaultStack, slack: SlackClient) -> None:
    """One lookup, so the ERM session and the item are known before the fault starts."""
    assert "code" in (await slack.ask("/history", f"{ITEM} 1")).lower()


# -- slow --------------------------------------------------------------------------------------


async def test_lookup_slower_than_the_client_timeout_gets_a_clear_reply_and_is_audited(
    faulty: FaultStack, slack: SlackClient
) -> None:
    faulty.sandbox.faults.latency_ms = SLOWER_THAN_TIMEOUT_MS

    text = await slack.ask("/history", f"{ITEM} 3")

    assert "ERM is not answering right now" in text
    assert "timed out" in text
    assert "Traceback" not in text
    assert await outcomes(faulty, 1) == [("history", "erm_error")]


async def test_code_answer_held_past_the_timeout_is_found_in_history_and_not_issued_twice(
    faulty: FaultStack, slack: SlackClient
) -> None:
    before = faulty.code_events(ITEM)
    faulty.sandbox.faults.hang_after_mutation_next = 1

    first = await slack.ask("/code", f"days {ITEM} 7")
    again = await slack.ask("/code", f"days {ITEM} 7")  # the agent, unsure, asks once more

    assert faulty.code_events(ITEM) == before + 1
    code = newest_code(faulty)
    assert code in first
    assert "ERM's answer was lost; this code was found in the item's history." in first
    assert "Already issued" in again
    assert code in again
    assert faulty.operations.count("GenerateDaysCode") == 1
    assert await outcomes(faulty, 2) == [("code days", "ok"), ("code days", "ok")]


async def test_code_when_erm_is_slow_for_everything_is_settled_and_sent_later_once(
    faulty: FaultStack, slack: SlackClient
) -> None:
    """The mutation is applied after the bot gave up, and the history cannot be read either:
    the agent is told to wait, and gets the code privately once the history shows it."""
    await warm_up(faulty, slack)
    before = faulty.code_events(ITEM)
    faulty.sandbox.faults.latency_ms = SLOWER_THAN_TIMEOUT_MS

    text = await slack.ask("/code", f"days {ITEM} 7")
    faulty.sandbox.faults.latency_ms = 0
    assert await faulty.dispatcher.core.background.drain(10.0)

    assert "ERM has not confirmed the code yet." in text
    assert "Do not ask again: you will get the code or a clear answer here." in text
    dms = [shown(c) for c in slack.fake.calls_to("chat.postMessage")]
    assert len(dms) == 1
    assert newest_code(faulty) in dms[0]
    assert "ERM's answer was lost; this code was found in the item's history." in dms[0]
    assert faulty.code_events(ITEM) == before + 1  # ERM made it, late; the bot never resent it
    assert faulty.operations.count("GenerateDaysCode") == 1
    assert await outcomes(faulty, 2) == [("code days", "pending"), ("code days", "ok")]


# -- 5xx ---------------------------------------------------------------------------------------


async def test_a_short_5xx_burst_on_a_lookup_is_retried_unseen(
    faulty: FaultStack, slack: SlackClient
) -> None:
    await warm_up(faulty, slack)
    faulty.sandbox.faults.fail_next = 1

    text = await slack.ask("/history", f"{ITEM} 2")

    assert newest_code(faulty) in text
    assert faulty.sandbox.faults.fail_next == 0
    assert (await outcomes(faulty, 1)) == [("history", "ok")]


async def test_a_5xx_burst_longer_than_the_retries_gets_a_clear_reply_then_the_bot_recovers(
    faulty: FaultStack, slack: SlackClient
) -> None:
    await warm_up(faulty, slack)
    faulty.sandbox.faults.fail_next = 2  # every attempt of one lookup

    during = await slack.ask("/history", f"{ITEM} 2")
    after = await slack.ask("/history", f"{ITEM} 2")

    assert "ERM is not answering right now: ERM answered HTTP 503" in during
    assert newest_code(faulty) in after
    assert await outcomes(faulty, 2) == [("history", "erm_error"), ("history", "ok")]


async def test_503_on_the_code_mutation_issues_nothing_and_the_retry_issues_one(
    faulty: FaultStack, slack: SlackClient
) -> None:
    await warm_up(faulty, slack)
    before = faulty.code_events(ITEM)
    faulty.sandbox.faults.fail_next = 1

    refused = await slack.ask("/code", f"days {ITEM} 5")
    assert faulty.code_events(ITEM) == before
    retried = await slack.ask("/code", f"days {ITEM} 5")

    assert "ERM is not answering right now: ERM answered HTTP 503" in refused
    assert faulty.code_events(ITEM) == before + 1
    assert newest_code(faulty) in retried
    assert await outcomes(faulty, 2) == [("code days", "erm_error"), ("code days", "ok")]


# -- refused -----------------------------------------------------------------------------------


async def test_erm_refusing_connections_gets_a_clear_reply_and_no_code_then_recovers(
    faulty: FaultStack, slack: SlackClient
) -> None:
    await warm_up(faulty, slack)
    before = faulty.code_events(ITEM)
    assert faulty.erm_proxy is not None
    await faulty.erm_proxy.stop()

    lookup = await slack.ask("/history", f"{ITEM} 2")
    code = await slack.ask("/code", f"days {ITEM} 3")
    await faulty.erm_proxy.start()
    recovered = await slack.ask("/code", f"days {ITEM} 3")

    for text in (lookup, code):
        assert "ERM is not answering right now: cannot reach ERM (ConnectError)" in text
    assert faulty.code_events(ITEM) == before + 1
    assert newest_code(faulty) in recovered
    assert await outcomes(faulty, 3) == [
        ("history", "erm_error"),
        ("code days", "erm_error"),
        ("code days", "ok"),
    ]


# -- dropped after the code was made ------------------------------------------------------------


async def test_connection_dropped_after_the_code_was_made_shows_that_code_once(
    faulty: FaultStack, slack: SlackClient
) -> None:
    before = faulty.code_events(ITEM)
    faulty.sandbox.faults.drop_after_mutation_next = 1

    text = await slack.ask("/code", f"days {ITEM} 9")
    resent = await slack.ask("/resend", ITEM)

    assert faulty.code_events(ITEM) == before + 1
    code = newest_code(faulty)
    assert code in text
    assert "found in the item's history" in text
    assert code in resent
    assert faulty.operations.count("GenerateDaysCode") == 1
    assert await outcomes(faulty, 2) == [("code days", "ok"), ("resend", "ok")]


async def test_dropped_answer_with_history_down_for_the_whole_window_says_check_it(
    faulty: FaultStack, slack: SlackClient
) -> None:
    before = faulty.code_events(ITEM)
    faults = faulty.sandbox.faults
    faults.drop_after_mutation_next = 1

    async def history_down_after_the_code(operation: str) -> None:
        if operation in MUTATIONS:
            faults.fail_next = 10_000

    faulty.hooks.after = history_down_after_the_code

    text = await slack.ask("/code", f"days {ITEM} 11")
    assert await faulty.dispatcher.core.background.drain(10.0)
    faults.fail_next = 0
    history = await slack.ask("/history", f"{ITEM} 1")

    assert "ERM has not confirmed the code yet." in text
    dms = [shown(c) for c in slack.fake.calls_to("chat.postMessage")]
    assert len(dms) == 1
    assert "ERM never confirmed your code" in dms[0]
    assert f"Check /history {ITEM} before asking again." in dms[0]
    assert "safe" not in dms[0]  # never "nothing was issued" while ERM may hold a code
    assert faulty.code_events(ITEM) == before + 1
    assert newest_code(faulty) in history
    assert faulty.operations.count("GenerateDaysCode") == 1
    assert await outcomes(faulty, 3) == [
        ("code days", "pending"),
        ("code days", "uncertain"),
        ("history", "ok"),
    ]


# -- tokens ------------------------------------------------------------------------------------


async def test_token_revoked_mid_run_signs_in_once_and_issues_one_code(
    faulty: FaultStack, slack: SlackClient
) -> None:
    await warm_up(faulty, slack)
    before, sign_ins = faulty.code_events(ITEM), faulty.service.sign_ins
    faulty.sandbox.revoke_tokens()  # ERM restarted with a new key: every token is refused

    text = await slack.ask("/code", f"days {ITEM} 4")

    assert faulty.code_events(ITEM) == before + 1
    assert newest_code(faulty) in text
    assert faulty.service.sign_ins == sign_ins + 1
    assert faulty.operations.count("GenerateDaysCode") == 2  # refused once, then issued
    assert await outcomes(faulty, 1) == [("code days", "ok")]


async def test_token_revoked_and_password_changed_gets_a_clear_reply_without_secrets(
    faulty: FaultStack, slack: SlackClient
) -> None:
    await warm_up(faulty, slack)
    before = faulty.code_events(ITEM)
    faulty.sandbox.distributor_by_name(ACME.name).password = "changed-by-the-distributor"
    faulty.sandbox.revoke_tokens()

    text = await slack.ask("/code", f"days {ITEM} 4")

    assert "erm-bot could not sign in to ERM for this distributor" in text
    assert "erm-bot distributor add" in text
    assert ACME.password not in text
    assert faulty.code_events(ITEM) == before
    assert await outcomes(faulty, 1) == [("code days", "erm_error")]
    assert all(ACME.password not in call.dump() for call in slack.fake.calls)


# -- the same on Telegram ----------------------------------------------------------------------

AGENT = User(5001, "Wanjiru", "wanjiru_k")


@pytest.fixture
async def telegram(
    faulty: FaultStack, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeTelegram]:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    await faulty.grant(f"telegram:{AGENT.id}", Role.AGENT)
    async with FakeTelegram() as fake:
        config = TelegramConfig(bot_token=fake.token, api_url=fake.api_url, poll_timeout=1.0)
        adapter = Attached(
            faulty.dispatcher.core,
            "telegram",
            TelegramAdapter(faulty.dispatcher, config, faulty.engine),
        )
        await adapter.start()
        try:
            yield fake
        finally:
            await adapter.stop()


async def test_on_telegram_a_5xx_on_the_code_gets_a_clear_reply_and_no_code(
    faulty: FaultStack, telegram: FakeTelegram
) -> None:
    await telegram.send(AGENT, f"/history {ITEM} 1", within=15.0)
    before = faulty.code_events(ITEM)
    faulty.sandbox.faults.fail_next = 1

    [reply] = await telegram.send(AGENT, f"/code days {ITEM} 5", within=15.0)

    assert "ERM is not answering right now: ERM answered HTTP 503" in reply.plain
    assert faulty.code_events(ITEM) == before
    assert await outcomes(faulty, 1) == [("code days", "erm_error")]
