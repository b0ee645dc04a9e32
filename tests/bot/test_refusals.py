"""ERM refusals in plain words with the next step: classification, arithmetic, the replies."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from bot_harness import Bot

from bot.credit import credit_stack, next_code_after_daily_limit, next_code_after_interval
from bot.errors import ErmRefusedError
from bot.messages import Tone
from bot.refusals import Known, RefusalKind, classify, clean_reason, describe, explain_refusal
from erm.errors import ErmNotFoundError, ErmRejectedError, ErmUnavailableError
from erm.models import CodeEvent, CodeSystem, CodeType, FleetPolicy, FleetRef, Item
from erm.sandbox import FLEET_DEFAULT, FLEET_STRICT
from erm.sandbox import model as sandbox_model

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ITEM = Item(
    id="65a0c0ffee0000000000abcd",
    oem_item_id="SHSA2409000101",
    fleet=FleetRef("65a0c0ffee0000000000f1ee", "ACME Nairobi Retail"),
    code_system=CodeSystem.ACP1,
)
DEFAULTS = FleetPolicy(
    free_codes=5,
    reset_codes=5,
    interval_ms=60_000,
    day_code_limit=10,
    total_code_limit=1096,
    max_credit_stack_days=60,
    max_credit_stack_events=5,
)


def event(
    ago: timedelta, days: int = 0, code_type: CodeType = CodeType.DAYS, *, n: int = 0
) -> CodeEvent:
    return CodeEvent(
        id=f"{n:024x}",
        code_type=code_type,
        code_days=days,
        code_dec="1" * 21,
        code_hex="AB" * 8,
        created_at=NOW - ago,
    )


def known(**changes: object) -> Known:
    base = Known(reason="", now=NOW, distributor="acme", item=ITEM, code_type=CodeType.DAYS)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- 1. classification ---------------------------------------------------------------------------

PHRASINGS = {
    RefusalKind.INTERVAL: [
        "Code generation interval not elapsed",
        "codeGenInterval not elapsed for this item",
        "Too soon: wait before generating another code",
        "Please wait 60 seconds between codes",
        "Minimum time between codes not yet elapsed",
    ],
    RefusalKind.CREDIT_STACK: [
        "Maximum credit stack days exceeded for this item",
        "maxCreditStackDays exceeded",
        "Credit stacking limit reached",
        "Cannot stack more than 60 days of credit",
    ],
    RefusalKind.DAY_LIMIT: [
        "Day code count limit reached for this item",
        "Daily code limit reached for this item",
        "dayCodeCountLimit exceeded",
        "Too many codes today for this item",
        "Maximum number of codes per day reached",
    ],
    RefusalKind.TOTAL_LIMIT: [
        "Total code count limit reached for this item",
        "Total code limit reached for this item",
        "totalCodeCountLimit exceeded",
    ],
    RefusalKind.FREE_LIMIT: [
        "Free code limit reached for this item",
        "freeCodeCount exhausted",
        "No free codes left for this item",
        "This item has no remaining free codes",
    ],
    RefusalKind.RESET_LIMIT: [
        "Reset code limit reached for this item",
        "resetCodeCount exceeded",
        "No more reset codes allowed for this item",
    ],
    RefusalKind.DAYS_RANGE: [
        "codeDays must not be greater than 1095",
        "codeDays must be between 1 and 1095",
        "codeDays must not be less than 1; codeDays must be an integer number",
        "days must be between 1 and 1095",
        "Number of days out of range",
    ],
    RefusalKind.NO_CODES: [
        "Code generation is not supported for OPENTOKEN items",
        "OpenPAYGO tokens are generated elsewhere",
        "Codes cannot be generated for this item",
        "Unsupported code system",
    ],
    RefusalKind.NOT_FOUND: [
        "Cannot return null for non-nullable field Mutation.generateDaysCode.",
        "Item not found",
    ],
    RefusalKind.FORBIDDEN: [
        "Forbidden resource",
        "Item is not assigned to this distributor",
        "Access denied",
    ],
    RefusalKind.GARBLED: [
        'Cannot query field "codeDecString" on type "CodeResponse".',
        'Variable "$in" got invalid value "x" at "in.codeDays"; Int cannot represent it',
    ],
}
CASES = [
    pytest.param(reason, kind, id=f"{kind}-{i}")
    for kind, reasons in PHRASINGS.items()
    for i, reason in enumerate(reasons)
]


@pytest.mark.parametrize(("reason", "kind"), CASES)
def test_reasons_are_classified_by_keywords(reason: str, kind: RefusalKind) -> None:
    assert classify(reason, "BAD_REQUEST") == kind


@pytest.mark.parametrize(("reason", "kind"), CASES)
def test_classification_ignores_case(reason: str, kind: RefusalKind) -> None:
    assert classify(reason.upper(), "BAD_REQUEST") == kind
    assert classify(reason.lower(), "BAD_REQUEST") == kind


def test_a_bare_forbidden_code_is_forbidden_whatever_the_words() -> None:
    assert classify("Something else", "FORBIDDEN") == RefusalKind.FORBIDDEN


def test_graphql_validation_codes_are_erm_bots_fault_not_the_users() -> None:
    assert classify("codeDays must be positive", "GRAPHQL_VALIDATION_FAILED") == (
        RefusalKind.GARBLED
    )


def test_a_free_code_that_is_not_supported_is_not_a_used_up_allowance() -> None:
    assert classify("Free codes are not supported for OPENTOKEN items") == RefusalKind.NO_CODES


def test_unknown_reasons_stay_other() -> None:
    assert classify("Item is locked by a running migration", "BAD_REQUEST") == RefusalKind.OTHER


@pytest.mark.parametrize("bare", ["Bad Request Exception", "bad request exception.", "  "])
def test_a_bare_bad_request_is_no_reason(bare: str) -> None:
    assert clean_reason(bare) == ""


def test_reasons_are_one_bounded_line() -> None:
    assert clean_reason("line one\nline\ttwo") == "line one line two"
    assert len(clean_reason("x" * 900)) == 200


# -- 2. arithmetic -------------------------------------------------------------------------------


def test_next_code_after_interval_is_the_newest_code_plus_the_interval() -> None:
    events = [event(timedelta(seconds=20), 5), event(timedelta(hours=3), 5)]
    assert next_code_after_interval(events, 60_000) == NOW + timedelta(seconds=40)
    assert next_code_after_interval([], 60_000) is None


def test_credit_stack_counts_only_days_codes_of_the_newest_events_in_the_period() -> None:
    events = [
        event(timedelta(days=1), 20),
        event(timedelta(days=2), code_type=CodeType.FREE),
        event(timedelta(days=3), 15),
        event(timedelta(days=61), 30),  # older than the 60-day period: expired
    ]
    stack = credit_stack(events, 60, None, NOW)
    assert (stack.stacked, stack.room) == (35, 25)
    assert stack.frees_at == NOW - timedelta(days=3) + timedelta(days=60)


def test_credit_stack_looks_only_at_the_events_window() -> None:
    events = [event(timedelta(days=d), 10, n=d) for d in range(1, 8)]  # 7 codes of 10 days
    assert credit_stack(events, 60, 5, NOW).stacked == 50
    assert credit_stack(events, 60, None, NOW).stacked == 70
    assert credit_stack(events, 60, 0, NOW).stacked == 0


def test_credit_stack_room_is_never_negative_and_nothing_counted_frees_nothing() -> None:
    full = credit_stack([event(timedelta(hours=1), 90)], 60, 5, NOW)
    assert (full.room, full.frees_at) == (0, NOW - timedelta(hours=1) + timedelta(days=60))
    empty = credit_stack([], 60, 5, NOW)
    assert (empty.stacked, empty.room, empty.frees_at) == (0, 60, None)


def test_daily_limit_frees_when_the_oldest_of_the_last_codes_turns_a_day_old() -> None:
    events = [event(timedelta(hours=h), 1, n=h) for h in (1, 2, 20)]
    assert next_code_after_daily_limit(events, 3, NOW) == NOW + timedelta(hours=4)


def test_daily_limit_unknown_when_history_does_not_show_it_reached() -> None:
    events = [event(timedelta(hours=1), 1), event(timedelta(hours=25), 1)]
    assert next_code_after_daily_limit(events, 2, NOW) is None
    assert next_code_after_daily_limit(events[:1], 2, NOW) is None


# -- 3. the words --------------------------------------------------------------------------------


def test_interval_says_when_the_next_code_can_be_made() -> None:
    text = describe(
        RefusalKind.INTERVAL, known(policy=DEFAULTS, events=[event(timedelta(seconds=20), 5)])
    )
    assert text == (
        "Too soon: ERM needs 1 min between two codes for one item.\n"
        "Next code for SHSA2409000101 at 12:01 UTC (in about 1 min).\n"
        "Send the same command again then."
    )


def test_interval_without_the_policy_asks_for_a_minute() -> None:
    assert describe(RefusalKind.INTERVAL, known()) == (
        "Too soon: ERM needs a pause between two codes for one item.\nTry again in a minute."
    )


def test_interval_without_history_uses_the_policys_pause() -> None:
    policy = dataclasses.replace(DEFAULTS, interval_ms=300_000)
    assert describe(RefusalKind.INTERVAL, known(policy=policy)) == (
        "Too soon: ERM needs 5 min between two codes for one item.\nTry again in 5 min."
    )


def test_credit_stack_gives_the_most_days_and_the_command() -> None:
    events = [event(timedelta(days=10), 30)]
    text = describe(RefusalKind.CREDIT_STACK, known(days=45, policy=DEFAULTS, events=events))
    assert text == (
        "Too many days: SHSA2409000101 can take at most 30 more days now.\n"
        "Its codes of the last 60 days add up to 30; ERM allows 60.\n"
        "To add 30 days now, type:\n"
        "/code days SHSA2409000101 30\n"
        "More days free up from 2026-07-21 12:00 UTC (in about 50 days)."
    )


def test_credit_stack_full_says_none_can_be_added_and_until_when() -> None:
    events = [event(timedelta(hours=30), 60)]
    text = describe(RefusalKind.CREDIT_STACK, known(days=5, policy=DEFAULTS, events=events))
    assert text == (
        "No more days can be added to SHSA2409000101 now.\n"
        "Its codes of the last 60 days add up to 60; ERM allows 60.\n"
        "More days free up from 2026-07-30 06:00 UTC (in about 59 days)."
    )


def test_credit_stack_that_disagrees_with_erm_gives_no_number() -> None:
    text = describe(RefusalKind.CREDIT_STACK, known(days=10, policy=DEFAULTS, events=[]))
    assert text == (
        "Too many days: ERM allows 60 days of credit on one item.\n"
        "Codes of the last 60 days count; /history SHSA2409000101 shows the recent codes.\n"
        "Try fewer days."
    )


def test_daily_limit_says_when_the_next_code_can_be_made() -> None:
    policy = dataclasses.replace(DEFAULTS, day_code_limit=2)
    events = [event(timedelta(hours=2), 1), event(timedelta(hours=23, minutes=30), 1)]
    assert describe(RefusalKind.DAY_LIMIT, known(policy=policy, events=events)) == (
        "Daily limit: ERM allows 2 codes per item in 24 hours.\n"
        "Next code for SHSA2409000101 at 12:30 UTC (in about 30 min).\n"
        "Send the same command again then."
    )


def test_total_limit_says_who_can_raise_it() -> None:
    assert describe(RefusalKind.TOTAL_LIMIT, known(policy=DEFAULTS)) == (
        "SHSA2409000101 has reached ERM's limit of 1096 codes in total.\n"
        "No code can be made for it until the limit is raised.\n"
        "A distributor admin can raise it in ERM, in the code policy of fleet ACME Nairobi Retail."
    )


def test_free_limit_says_only_the_erm_admin_can_raise_it() -> None:
    policy = dataclasses.replace(DEFAULTS, free_codes=1)
    text = describe(RefusalKind.FREE_LIMIT, known(code_type=CodeType.FREE, policy=policy))
    assert text == (
        "SHSA2409000101 has no free codes left in ERM (its fleet allows 1 per item).\n"
        "Only the distributor's ERM admin can raise the item's free code allowance, in ERM.\n"
        "Send the same command again then."
    )


def test_days_out_of_range_gives_the_range() -> None:
    assert describe(RefusalKind.DAYS_RANGE, known(days=2000)) == (
        "ERM takes 1 to 1095 days in one code.\n"
        "Type a number in that range, e.g. /code days SHSA2409000101 30"
    )


def test_items_erm_makes_no_codes_for_are_named_so() -> None:
    item = dataclasses.replace(ITEM, code_system=CodeSystem.OPENTOKEN)
    reason = "Code generation is not supported for OPENTOKEN items"
    assert describe(RefusalKind.NO_CODES, known(item=item, reason=reason)) == (
        "ERM cannot make days codes for SHSA2409000101 here (OPENTOKEN item).\n"
        "ERM said: Code generation is not supported for OPENTOKEN items\n"
        "Ask the distributor's ERM admin how codes for this item are made."
    )


def test_forbidden_code_says_whose_account_and_what_to_check() -> None:
    assert describe(RefusalKind.FORBIDDEN, known()) == (
        "ERM does not let acme's account make days codes for SHSA2409000101.\n"
        "Check the id you typed and the distributor (add --dist NAME for another one).\n"
        "If both are right, the distributor's ERM admin must allow it in ERM."
    )


def test_lookup_refusals_never_show_bad_request_exception() -> None:
    refused = explain_refusal(ErmRejectedError("Bad Request Exception", "BAD_REQUEST"))
    assert str(refused) == (
        "ERM refused this without saying why.\n"
        "Nothing was done.\n"
        "Check the command; if it is right, ask the distributor's ERM admin about it."
    )


def test_unknown_reasons_are_shown_in_erms_own_words() -> None:
    refused = explain_refusal(ErmRejectedError("Item is locked by a migration", "BAD_REQUEST"))
    assert str(refused).splitlines()[0] == "ERM refused: Item is locked by a migration"
    assert (refused.kind, refused.erm_code) == (RefusalKind.OTHER, "BAD_REQUEST")


def test_lookup_forbidden_says_what_to_check() -> None:
    refused = explain_refusal(ErmRejectedError("Forbidden resource", "FORBIDDEN"))
    assert str(refused) == (
        "ERM does not let this distributor's account see or do this.\n"
        "Check the id you typed and the distributor (add --dist NAME for another one).\n"
        "If both are right, the distributor's ERM admin must allow it in ERM."
    )


def test_null_root_field_reads_as_not_found() -> None:
    exc = ErmNotFoundError("Cannot return null for non-nullable field Query.getSpecificItemFleet.")
    assert explain_refusal(exc).kind == RefusalKind.NOT_FOUND


# -- 4. end to end through the dispatcher, against the sandbox ----------------------------------


@pytest.fixture
def synced(bot: Bot) -> Bot:
    """The bot's clock reads the sandbox's, so ERM's createdAt and the bot's "now" agree."""
    sandbox_clock = bot.sandbox.config.clock
    bot.core.clock = lambda: datetime.fromtimestamp(sandbox_clock(), UTC)
    return bot


def advance(bot: Bot, seconds: float) -> None:
    bot.sandbox.config.clock.advance(seconds)  # type: ignore[attr-defined]


def default_item(bot: Bot, position: int = 0) -> str:
    items = bot.sandbox.items_of(
        "acme", fleet=FLEET_DEFAULT, code_system=sandbox_model.CodeSystem.ACP1
    )
    return items[position].oem_item_id


async def refused(bot: Bot, user: str, text: str) -> str:
    reply = await bot.say(user, text)
    assert reply.tone is Tone.WARNING, reply.text()
    assert reply.codes == ()
    return reply.text()


async def test_second_code_within_the_interval_says_when(synced: Bot) -> None:
    oem = default_item(synced)
    assert (await synced.say("agent", f"/code days {oem} 5")).codes
    text = await refused(synced, "agent", f"/code days {oem} 6")
    assert text == (
        "Too soon: ERM needs 1 min between two codes for one item.\n"
        f"Next code for {oem} at 00:01 UTC (in about 1 min).\n"
        "Send the same command again then."
    )
    (row,) = await synced.audit.recent(limit=1)
    assert row.outcome == "refused"
    assert "interval" in row.detail


async def test_days_over_the_credit_stack_give_the_most_days_and_the_command(
    synced: Bot,
) -> None:
    oem = default_item(synced, 1)
    assert (await synced.say("agent", f"/code days {oem} 30")).codes
    advance(synced, 61)
    text = await refused(synced, "agent", f"/code days {oem} 40")
    assert text == (
        f"Too many days: {oem} can take at most 30 more days now.\n"
        "Its codes of the last 60 days add up to 30; ERM allows 60.\n"
        "To add 30 days now, type:\n"
        f"/code days {oem} 30\n"
        "More days free up from 2026-07-31 00:00 UTC (in about 60 days)."
    )
    assert (await synced.say("agent", f"/code days {oem} 30")).codes  # the advice works


async def test_a_full_credit_stack_says_none_can_be_added(synced: Bot) -> None:
    oem = default_item(synced, 2)
    assert (await synced.say("agent", f"/code days {oem} 60")).codes
    advance(synced, 61)
    text = await refused(synced, "agent", f"/code days {oem} 1")
    assert text.splitlines()[:2] == [
        f"No more days can be added to {oem} now.",
        "Its codes of the last 60 days add up to 60; ERM allows 60.",
    ]


async def test_the_daily_limit_says_when_the_next_code_is_possible(synced: Bot) -> None:
    oem = default_item(synced, 3)
    for days in range(1, 11):  # the fleet allows 10 a day, 60 s apart
        assert (await synced.say("agent", f"/code days {oem} {days}")).codes
        advance(synced, 61)
    text = await refused(synced, "agent", f"/code days {oem} 1 --again")
    assert text == (
        "Daily limit: ERM allows 10 codes per item in 24 hours.\n"
        f"Next code for {oem} at tomorrow 00:00 UTC (in about 24 h).\n"
        "Send the same command again then."
    )


async def test_the_total_limit_says_who_can_raise_it(synced: Bot) -> None:
    oem = default_item(synced, 4)
    fleet = synced.sandbox.fleet_by_name(FLEET_DEFAULT)
    used = synced.code_events(oem)
    fleet.policy = dataclasses.replace(fleet.policy, total_code_count_limit=used)
    text = await refused(synced, "agent", f"/code days {oem} 5")
    assert text == (
        f"{oem} has reached ERM's limit of {used} codes in total.\n"
        "No code can be made for it until the limit is raised.\n"
        f"A distributor admin can raise it in ERM, in the code policy of fleet {FLEET_DEFAULT}."
    )


@pytest.mark.parametrize("word", ["free", "reset"])
async def test_a_used_up_allowance_says_only_the_erm_admin_can_raise_it(
    synced: Bot, word: str
) -> None:
    items = synced.sandbox.items_of(
        "acme", fleet=FLEET_STRICT, code_system=sandbox_model.CodeSystem.ACP1
    )
    item = items[0]
    generator: sandbox_model.CodeGenerator = item.code_generator
    setattr(generator, f"{word}_code_count", 0)  # the item's one allowed code is used up
    text = await refused(synced, "supervisor", f"/code {word} {item.oem_item_id}")
    assert text == (
        f"{item.oem_item_id} has no {word} codes left in ERM (its fleet allows 1 per item).\n"
        f"Only the distributor's ERM admin can raise the item's {word} code allowance, in ERM.\n"
        "Send the same command again then."
    )


async def test_an_unreadable_policy_falls_back_to_the_plain_sentence(
    synced: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    oem = default_item(synced, 5)
    assert (await synced.say("agent", f"/code days {oem} 5")).codes

    async def broken(token: str, fleet_id: str) -> object:
        raise ErmUnavailableError("ERM answered HTTP 503")

    monkeypatch.setattr(synced.core.erm.client, "fleet", broken)
    text = await refused(synced, "agent", f"/code days {oem} 6")
    assert text == (
        "Too soon: ERM needs a pause between two codes for one item.\nTry again in a minute."
    )


async def test_a_forbidden_lookup_says_what_to_check(
    synced: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def forbidden(distributor: str) -> object:
        raise ErmRejectedError("Forbidden resource", "FORBIDDEN")

    monkeypatch.setattr(synced.core.erm, "item_fleets", forbidden)
    reply = await synced.say("viewer", "/fleet")
    assert reply.tone is Tone.WARNING
    assert reply.text() == (
        "ERM does not let this distributor's account see or do this.\n"
        "Check the id you typed and the distributor (add --dist NAME for another one).\n"
        "If both are right, the distributor's ERM admin must allow it in ERM."
    )


def test_refusals_are_user_errors_with_erms_words_kept() -> None:
    refused = explain_refusal(ErmRejectedError("Free code limit reached", "BAD_REQUEST"))
    assert isinstance(refused, ErmRefusedError)
    assert refused.erm_message == "Free code limit reached"
