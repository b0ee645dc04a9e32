"""parse(): text -> command, arguments and flags, or a UsageError that says what to type."""

from __future__ import annotations

import pytest

from bot.commands import COMMANDS
from bot.errors import UnknownCommandError, UsageError
from bot.parse import MAX_TEXT, parse

ITEM = "TEST2503000001"


def test_code_days_parsed() -> None:
    parsed = parse(f"/code days {ITEM} 30", COMMANDS)
    assert parsed.command.name == "code days"
    assert parsed.args == {"item": ITEM, "days": 30, "note": None}
    assert parsed.flags == {}


def test_days_with_suffix() -> None:
    assert parse(f"/code days {ITEM} 30d", COMMANDS).args["days"] == 30


def test_missing_argument_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        parse(f"/code days {ITEM}", COMMANDS)
    assert caught.value.problem == "days is missing."
    assert caught.value.usage is not None
    assert caught.value.usage.startswith("/code days")
    assert caught.value.example


def test_bad_argument_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="days must be a number"):
        parse(f"/code days {ITEM} lots", COMMANDS)


def test_code_alone_or_with_an_item_is_the_guided_menu() -> None:
    assert parse("/code", COMMANDS).command.name == "code"
    parsed = parse(f"/code {ITEM} --dist acme", COMMANDS)
    assert (parsed.command.name, parsed.args["item"], parsed.distributor) == ("code", ITEM, "acme")


def test_unknown_subcommand() -> None:
    with pytest.raises(UsageError, match="/code has no 'weeks'"):
        parse(f"/code weeks {ITEM}", COMMANDS)


def test_unknown_command_did_you_mean() -> None:
    with pytest.raises(UnknownCommandError, match=r"Did you mean /history\?"):
        parse("/histroy x", COMMANDS)


def test_unknown_command_far_from_any_points_to_help() -> None:
    with pytest.raises(UnknownCommandError, match="Type /help for the list"):
        parse("/zzzzqqq", COMMANDS)


def test_dist_flag_with_space() -> None:
    parsed = parse(f"/history {ITEM} --dist SunBright", COMMANDS)
    assert parsed.flags == {"dist": "SunBright"}
    assert parsed.distributor == "sunbright"


def test_dist_flag_with_equals() -> None:
    parsed = parse(f"/history {ITEM} --dist=acme", COMMANDS)
    assert parsed.distributor == "acme"
    assert parsed.args["item"] == ITEM


def test_dist_flag_without_value() -> None:
    with pytest.raises(UsageError, match="--dist needs a value"):
        parse(f"/history {ITEM} --dist", COMMANDS)


def test_unknown_flag() -> None:
    with pytest.raises(UsageError, match=r"/fleet has no option --force \(options: --dist\)"):
        parse("/fleet --force", COMMANDS)


def test_flag_not_offered_by_a_command_is_unknown() -> None:
    with pytest.raises(UsageError, match="has no option --again"):
        parse(f"/history {ITEM} --again", COMMANDS)


def test_boolean_flag() -> None:
    assert parse(f"/code days {ITEM} 30 --again", COMMANDS).flags == {"again": True}


def test_long_dash_is_double_dash() -> None:
    assert parse(f"/code days {ITEM} 30 \u2014again", COMMANDS).flags == {"again": True}
    assert parse(f"/code days {ITEM} 30 \u2013again", COMMANDS).flags == {"again": True}


def test_bot_suffix_dropped() -> None:
    assert parse(f"/code@mybot days {ITEM} 30", COMMANDS).command.name == "code days"


def test_rest_of_line_note() -> None:
    parsed = parse(f"/code days {ITEM} 30 cash 500 from Jane", COMMANDS)
    assert parsed.args["note"] == "cash 500 from Jane"


def test_rest_of_line_keeps_flags_out() -> None:
    parsed = parse(f"/code days {ITEM} 30 cash 500 --again", COMMANDS)
    assert parsed.args["note"] == "cash 500"
    assert parsed.flags == {"again": True}


def test_too_many_arguments() -> None:
    with pytest.raises(UsageError, match="Too many arguments: extra words"):
        parse(f"/resend {ITEM} extra words", COMMANDS)


def test_curly_quotes_group_words() -> None:
    parsed = parse("/items \u201cSHSA 24\u201d", COMMANDS)
    assert parsed.args["search"] == "SHSA 24"


def test_unbalanced_quote_still_parses() -> None:
    parsed = parse("/items \u201cSHSA", COMMANDS)
    assert parsed.args["search"] == "SHSA"


@pytest.mark.parametrize("typed", ["", "   ", "\n\t"])
def test_empty_text(typed: str) -> None:
    with pytest.raises(UsageError, match="Type a command"):
        parse(typed, COMMANDS)


def test_text_over_the_limit() -> None:
    typed = "/help " + "x" * (MAX_TEXT + 1 - len("/help "))
    assert len(typed) == 1001
    with pytest.raises(UsageError, match=r"too long \(1001 characters, at most 1000\)"):
        parse(typed, COMMANDS)


def test_text_at_the_limit_is_parsed() -> None:
    typed = "/help code" + " " * (MAX_TEXT - len("/help code"))
    assert len(typed) == MAX_TEXT
    assert parse(typed, COMMANDS).args == {"topic": "code"}


def test_command_name_is_case_insensitive() -> None:
    assert parse(f"/CODE Days {ITEM} 30", COMMANDS).command.name == "code days"


def test_optional_argument_default() -> None:
    assert parse(f"/history {ITEM}", COMMANDS).args == {"item": ITEM, "count": 5}


@pytest.mark.parametrize("text", ["/erm history TEST2503000017", "/erm /history TEST2503000017"])
def test_the_slack_umbrella_word_works_everywhere(text: str) -> None:
    assert parse(text, COMMANDS).command.name == "history"


def test_the_umbrella_alone_is_help() -> None:
    assert parse("/erm", COMMANDS).command.name == "help"


# -- what a person says is what is issued (issue 14, item 3) -------------------------------------


@pytest.mark.parametrize(
    ("typed", "days"),
    [
        ("30", 30),
        ("30d", 30),
        ("30D", 30),
        ("30 days", 30),
        ("1 day", 1),
        ("30 Days", 30),
        ("2w", 14),
        ("2 weeks", 14),
        ("1 week", 7),
        ("2 WEEKS", 14),
    ],
)
def test_days_units_that_are_days_or_weeks(typed: str, days: int) -> None:
    parsed = parse(f"/code days {ITEM} {typed}", COMMANDS)
    assert parsed.args == {"item": ITEM, "days": days, "note": None}


def test_a_unit_word_is_part_of_the_days_not_the_note() -> None:
    parsed = parse(f"/code days {ITEM} 2 weeks cash 500 --again", COMMANDS)
    assert parsed.args == {"item": ITEM, "days": 14, "note": "cash 500"}
    assert parsed.flags == {"again": True}


@pytest.mark.parametrize("note", ["m-pesa 500", "an advance", "monthly plan", "daily"])
def test_a_note_that_is_not_a_unit_stays_the_note(note: str) -> None:
    parsed = parse(f"/code days {ITEM} 30 {note}", COMMANDS)
    assert parsed.args == {"item": ITEM, "days": 30, "note": note}


def test_a_month_is_refused_with_the_command_to_type_in_days() -> None:
    with pytest.raises(UsageError) as caught:
        parse(f"/code days {ITEM} 1 month", COMMANDS)
    assert str(caught.value) == (f"1 month is not a number of days.\nType: /code days {ITEM} 30")


def test_the_command_to_type_keeps_the_note_and_flags() -> None:
    with pytest.raises(UsageError) as caught:
        parse(f"/code days {ITEM} 2 Months cash 500 --again", COMMANDS)
    assert str(caught.value).splitlines() == [
        "2 months is not a number of days.",
        f"Type: /code days {ITEM} 60 cash 500 --again",
    ]


@pytest.mark.parametrize(
    ("typed", "said", "instead"),
    [
        ("1mo", "1 month", "30"),
        ("3 months", "3 months", "90"),
        ("1 year", "1 year", "365"),
        ("2y", "2 years", "730"),
        ("1 yr", "1 year", "365"),
        ("5 years", "5 years", "1095"),
        ("3h", "3 hours", "1"),
        ("12 hours", "12 hours", "1"),
        ("30 min", "30 minutes", "1"),
        ("2 fortnights", "2 fortnights", "28"),
        ("1 mwezi", "1 mwezi", "30"),
        ("2 semanas", "2 semanas", "14"),
    ],
)
def test_units_that_are_not_days_are_refused(typed: str, said: str, instead: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(f"/code days {ITEM} {typed}", COMMANDS)
    first, second = str(caught.value).splitlines()
    assert first.startswith(f"{said} is not a number of days")
    assert second == f"Type: /code days {ITEM} {instead}"


@pytest.mark.parametrize("typed", ["1m", "1 m", "30M"])
def test_m_is_neither_months_nor_minutes(typed: str) -> None:
    with pytest.raises(UsageError, match="is not a number of days"):
        parse(f"/code days {ITEM} {typed}", COMMANDS)


@pytest.mark.parametrize("typed", ["1.5", "-3", "30x", "thirty"])
def test_days_that_are_not_a_whole_number_are_refused(typed: str) -> None:
    with pytest.raises(UsageError, match="days must be a number like 30, 30d or 2w"):
        parse(f"/code days {ITEM} {typed}", COMMANDS)


def test_weeks_over_the_limit_say_how_many_days_that_is() -> None:
    with pytest.raises(UsageError, match=r"from 1 to 1095, not 1400 \(200w\)"):
        parse(f"/code days {ITEM} 200w", COMMANDS)


# Superscripts make int() raise; Arabic-Indic, Persian, Devanagari and fullwidth digits make it
# return a number silently. Only 0-9 are read.
UNICODE_NUMBERS = ["²", "³⁰", "٣٠", "۳۰", "३०", "\uff13\uff10", "\U0001d7d1\U0001d7ce"]


@pytest.mark.parametrize("typed", UNICODE_NUMBERS)
def test_unicode_digits_in_days_are_a_usage_error(typed: str) -> None:
    with pytest.raises(UsageError, match="with the digits 0-9"):
        parse(f"/code days {ITEM} {typed}", COMMANDS)


@pytest.mark.parametrize("typed", UNICODE_NUMBERS)
def test_unicode_digits_in_days_with_a_unit_are_a_usage_error(typed: str) -> None:
    with pytest.raises(UsageError, match="with the digits 0-9"):
        parse(f"/code days {ITEM} {typed} days", COMMANDS)


@pytest.mark.parametrize("typed", UNICODE_NUMBERS)
@pytest.mark.parametrize("command", ["/history TEST2503000017", "/audit TEST2503000017"])
def test_unicode_digits_in_counts_are_a_usage_error(command: str, typed: str) -> None:
    with pytest.raises(UsageError, match="with the digits 0-9"):
        parse(f"{command} {typed}", COMMANDS)
