"""Careless input through the whole bot: what a person says is what is issued, and a number typed
in another script is a usage error, never an incident (issue 14, item 3)."""

from __future__ import annotations

import pytest
from bot_harness import Bot

from bot.approvals.policy import apply_setting
from bot.errors import UsageError
from bot.messages import Tone
from bot.storage.approval_tables import Policy
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID


def _days_issued(bot: Bot) -> list[int]:
    return [e.code_days for e in bot.sandbox.item_by_oem_id(ITEM).code_generator.events]


async def test_one_month_is_refused_and_nothing_is_issued(bot: Bot) -> None:
    before = _days_issued(bot)
    reply = await bot.say("agent", f"/code days {ITEM} 1 month")
    assert reply.codes == ()
    assert reply.tone is Tone.WARNING
    assert reply.text() == f"1 month is not a number of days.\nType: /code days {ITEM} 30"
    assert _days_issued(bot) == before
    assert bot.transport.calls["GenerateDaysCode"] == 0
    [record] = await bot.audit.recent(user=("console", "agent"))
    assert record.outcome == "invalid"


async def test_two_weeks_issue_fourteen_days(bot: Bot) -> None:
    before = _days_issued(bot)
    reply = await bot.say("agent", f"/code days {ITEM} 2 weeks")
    assert reply.codes
    assert reply.title is not None
    assert reply.title.startswith("14-day code")
    assert _days_issued(bot) == [*before, 14]


async def test_a_unit_word_never_becomes_the_note(bot: Bot) -> None:
    before = _days_issued(bot)
    reply = await bot.say("agent", f"/code days {ITEM} 30 days cash 500")
    assert reply.codes
    assert _days_issued(bot) == [*before, 30]
    notes = [f.value for f in reply.fields if f.label == "Note"]
    assert notes == ["cash 500"]


@pytest.mark.parametrize(
    "text",
    [
        f"/code days {ITEM} \uff13\uff10",  # fullwidth
        f"/code days {ITEM} ٣٠",
        f"/code days {ITEM} ²",
        f"/history {ITEM} ²",
        f"/history {ITEM} ٣",
        "/items --page ²",
        "/items --page ٣",
        f"/audit {ITEM} ²",
    ],
)
async def test_unicode_digits_are_a_usage_error_not_an_incident(bot: Bot, text: str) -> None:
    before = _days_issued(bot)
    reply = await bot.say("admin", text)
    assert reply.tone is Tone.WARNING, reply.text()
    assert "the digits 0-9" in reply.text()
    assert "incident" not in reply.text()
    assert reply.codes == ()
    assert _days_issued(bot) == before


@pytest.mark.parametrize("typed", ["30", "30d", "30D"])
def test_policy_days_over_takes_days_as_code_days_does(typed: str) -> None:
    assert apply_setting(Policy(days_over=None), "days-over", typed).days_over == 30


@pytest.mark.parametrize("typed", ["٣٠", "³⁰", "\uff13\uff10"])
@pytest.mark.parametrize("setting", ["days-over", "daily-count"])
def test_policy_numbers_in_other_scripts_are_a_usage_error(setting: str, typed: str) -> None:
    with pytest.raises(UsageError, match="the digits 0-9"):
        apply_setting(Policy(), setting, typed)
