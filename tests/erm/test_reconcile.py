"""Judging a lost code answer from one read of the history (no ERM needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from erm.models import CodeEvent, CodeType, Item
from erm.reconcile import PendingCode, Verdict, code_description, judge

ITEM = Item(id="65a0c0ffee0000000000abcd", oem_item_id="TEST2503000017")
STARTED = datetime(2026, 12, 5, 10, 0, tzinfo=UTC).timestamp()


def pending(days: int | None = 30, code_type: CodeType = CodeType.DAYS) -> PendingCode:
    return PendingCode(
        "acme",
        ITEM,
        code_type,
        days,
        "ab12cd34",
        code_description("cash", "ab12cd34"),
        STARTED,
        "x",
    )


def event(
    seconds: float,
    *,
    days: int = 30,
    description: str | None = None,
    code_type: CodeType = CodeType.DAYS,
) -> CodeEvent:
    return CodeEvent(
        id=f"e{seconds}",
        code_type=code_type,
        code_days=days,
        code_dec=f"{int(seconds) % 10}" * 21,
        code_hex="",
        created_at=datetime.fromtimestamp(STARTED + seconds, UTC),
        description=description,
    )


def verdict_of(events: list[CodeEvent], request: PendingCode | None = None) -> Verdict:
    return judge(request or pending(), events, likely_skew=5, changed_skew=120).verdict


def test_the_reference_proves_the_code_wherever_erm_put_it() -> None:
    tagged = event(3, description="cash [erm-bot ab12cd34] (edited)")
    settled = judge(pending(), [event(9), tagged], likely_skew=5, changed_skew=120)
    assert settled.verdict is Verdict.ISSUED
    assert settled.code is not None
    assert (settled.code.code_dec, settled.code.likely) == (tagged.code_dec, False)


def test_an_untagged_code_of_the_same_kind_after_the_request_is_the_likely_answer() -> None:
    settled = judge(pending(), [event(8), event(2)], likely_skew=5, changed_skew=120)
    assert settled.verdict is Verdict.LIKELY
    assert settled.code is not None
    assert settled.code.likely
    assert settled.code.code_dec == event(2).code_dec  # the oldest after the request


def test_another_requests_reference_is_never_taken_for_this_one() -> None:
    assert verdict_of([event(2, description="[erm-bot ffff0000]")]) is Verdict.CHANGED


def test_other_days_or_another_type_change_the_history_without_answering() -> None:
    assert verdict_of([event(2, days=7)]) is Verdict.CHANGED
    assert verdict_of([event(2, code_type=CodeType.FREE, days=0)]) is Verdict.CHANGED


def test_free_and_reset_match_by_type_whatever_their_days() -> None:
    free = pending(None, CodeType.FREE)
    assert verdict_of([event(2, code_type=CodeType.FREE, days=1096)], free) is Verdict.LIKELY


def test_a_code_from_just_before_the_request_keeps_nothing_issued_from_being_said() -> None:
    assert verdict_of([event(-60)]) is Verdict.CHANGED  # ERM's clock may be behind ours
    assert verdict_of([event(-3600)]) is Verdict.NONE


def test_undated_events_count_as_new() -> None:
    undated = CodeEvent("e", CodeType.DAYS, 7, "1" * 21, "", None)
    assert verdict_of([undated]) is Verdict.CHANGED


def test_only_issued_and_likely_are_final() -> None:
    assert {v for v in Verdict if v.final} == {Verdict.ISSUED, Verdict.LIKELY}
