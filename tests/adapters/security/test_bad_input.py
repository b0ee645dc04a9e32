"""Bad input through the platform adapters: clear answers, nothing changed, no traceback shown.

Over-long text, control characters (NUL included), markup injection in notes and names, unicode,
huge button values and callback data, malformed JSON and form bodies (WhatsApp notifications
signed correctly, so they reach the parser). Where the database could choke (PostgreSQL refuses
NUL in text), the test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.slack import block_actions_payload, encode_payload, signed_headers
from fakes.telegram import User, parse_html
from security_rig import (
    TELEGRAM_AGENT,
    WHATSAPP_AGENT,
    SlackSide,
    TelegramSide,
    WhatsAppSide,
    rows,
    settle,
)

from bot.audit import AuditLog
from bot.messages import visible
from bot.roles import Role
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
CONTROL = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r") + "\x7f"


def newest_event(stack: Any) -> Any:
    return stack.sandbox.item_by_oem_id(ITEM).code_generator.events[-1]


def assert_clean(answer: str) -> None:
    assert "Traceback" not in answer
    assert "incident" not in answer  # a bad input is the user's to fix, not an incident
    assert 'File "' not in answer


# -- over-long text ----------------------------------------------------------------------------


async def test_over_long_slack_command_gets_a_clear_error_and_changes_nothing(
    stack: Any, slack_side: SlackSide
) -> None:
    before = stack.code_events(ITEM)

    answer = await slack_side.ask(f"/code days {ITEM} 30 " + "x" * 5000)

    assert "That message is too long" in answer
    assert_clean(answer)
    assert stack.code_events(ITEM) == before
    assert len(answer) < 1000  # the input is not echoed back


async def test_over_long_telegram_message_gets_a_clear_error_and_changes_nothing(
    stack: Any, telegram_side: TelegramSide
) -> None:
    before = stack.code_events(ITEM)

    answer = await telegram_side.ask(TELEGRAM_AGENT, f"/code days {ITEM} 30 " + "é" * 4000)

    assert "That message is too long" in answer
    assert_clean(answer)
    assert stack.code_events(ITEM) == before


async def test_over_long_note_is_refused_before_erm(stack: Any, slack_side: SlackSide) -> None:
    before = stack.code_events(ITEM)

    answer = await slack_side.ask(f"/code days {ITEM} 30 " + "n" * 300)

    assert "too long" in answer
    assert "at most 200" in answer
    assert stack.code_events(ITEM) == before


# -- control characters ------------------------------------------------------------------------


async def test_control_characters_in_an_item_id_get_a_clear_error_and_no_code(
    any_stack: Any, any_slack_side: SlackSide
) -> None:
    before = any_stack.code_events(ITEM)

    answer = await any_slack_side.ask(f"/code days {ITEM[:6]}\x00\x1b[31m{ITEM[6:]} 30")

    assert "item" in answer.lower()
    assert_clean(answer)
    assert "\x00" not in answer
    assert "\x1b" not in answer
    assert any_stack.code_events(ITEM) == before


async def test_control_characters_in_a_note_reach_neither_erm_nor_the_database(
    any_stack: Any, any_slack_side: SlackSide
) -> None:
    answer = await any_slack_side.ask(f"/code days {ITEM} 30 cash{CONTROL}500")
    resent = await any_slack_side.ask(f"/resend {ITEM}")

    event = newest_event(any_stack)
    code = keypad_format(event.code_dec_string)
    assert code in answer
    assert code in resent  # recorded, so /resend finds it
    assert "could not record" not in answer
    for text in (answer, resent, event.description or ""):
        assert not any(c in text for c in CONTROL), repr(text)
    [row] = await AuditLog(any_stack.engine).recent(limit=1)
    assert "\x00" not in row.arguments


HOSTILE = User(TELEGRAM_AGENT.id, "Ne\x00ema\x07", "neema_w", "<b>W\x00</b>")


async def test_nul_in_a_telegram_command_is_answered_on_every_database(
    any_stack: Any, any_telegram_side: TelegramSide
) -> None:
    answer = await any_telegram_side.ask(HOSTILE, "/whoami\x00\x07")

    assert_clean(answer)
    assert "\x00" not in answer
    parse_html(answer)  # valid Telegram HTML: the fake would have refused it otherwise
    assert f"telegram:{TELEGRAM_AGENT.id}" in answer


async def test_a_code_issued_by_a_user_with_nul_in_their_name_is_recorded_on_every_database(
    any_stack: Any, any_telegram_side: TelegramSide
) -> None:
    answer = await any_telegram_side.ask(HOSTILE, f"/code days {ITEM} 30")
    resent = await any_telegram_side.ask(HOSTILE, f"/resend {ITEM}")

    code = keypad_format(newest_event(any_stack).code_dec_string)
    assert code in answer
    assert "could not record" not in answer
    assert code in resent


async def test_joining_by_invite_with_nul_in_the_name_works_on_every_database(
    any_stack: Any, any_telegram_side: TelegramSide
) -> None:
    newcomer = User(7202, "Ze\x00nab", "zenab")
    await any_stack.grant("slack:U0ADMIN", Role.ADMIN)  # an invite holds while its admin does
    invite, _ = await any_stack.dispatcher.core.invites.create(
        Role.VIEWER,
        "acme",
        created_by="slack:U0ADMIN",
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )

    answer = await any_telegram_side.ask(newcomer, f"/start {invite}")

    assert "You are now viewer at acme" in answer
    assert_clean(answer)


# -- markup in notes and names -----------------------------------------------------------------

SLACK_MARKUP = "<!channel> <@U0ADMIN> <https://evil.example|click> *bold* `x` &amp; ~s~"
HTML_MARKUP = "<b>bold</b> <a href=https://evil.example>click</a> &amp; <script>x</script> <i>"


async def test_slack_markup_in_a_note_is_shown_literally_and_pings_no_one(
    stack: Any, slack_side: SlackSide
) -> None:
    answer = await slack_side.ask(f"/code days {ITEM} 30 {SLACK_MARKUP}")

    sent = json.dumps([c.body for c in slack_side.fake.posts()])
    assert "<!channel>" not in sent
    assert "<@U0ADMIN>" not in sent
    assert "<https://evil.example" not in sent
    assert "&lt;!channel&gt;" in answer
    assert keypad_format(newest_event(stack).code_dec_string) in answer


async def test_html_in_a_note_is_shown_literally_on_telegram(
    stack: Any, telegram_side: TelegramSide
) -> None:
    answer = await telegram_side.ask(TELEGRAM_AGENT, f"/code days {ITEM} 30 {HTML_MARKUP}")

    visible = parse_html(answer)
    assert HTML_MARKUP in visible  # every tag shown as typed, none interpreted
    assert "<script>" not in answer
    assert keypad_format(newest_event(stack).code_dec_string) in visible


async def test_markup_in_a_slack_user_name_is_not_rendered(
    stack: Any, slack_side: SlackSide
) -> None:
    answer = await slack_side.ask("/whoami", user_name="<!here> *admin*")

    sent = json.dumps([c.body for c in slack_side.fake.posts()])
    assert "<!here>" not in sent
    assert_clean(answer)


# -- unicode -----------------------------------------------------------------------------------


async def test_lookalike_unicode_item_id_gets_a_clear_error_and_no_code(
    stack: Any, slack_side: SlackSide
) -> None:
    before = stack.code_events(ITEM)
    lookalike = "\u0422" + ITEM[1:]  # Cyrillic Te

    answer = await slack_side.ask(f"/code days {lookalike} 30")

    assert "only letters, digits" in answer
    assert stack.code_events(ITEM) == before


UNICODE_NOTES = {
    "emoji": "paid 500 \U0001f4b5\U0001f44d\U0001f3fd",  # emoji with a skin tone
    "rtl": "\u0645\u062f\u0641\u0648\u0639 \u202eevil\u202c",  # Arabic, a right-to-left override
    "combining": "e\u0301\u0301\u0301 zalgo\u0336\u0336",  # combining marks
    "zwj": "\U0001f468\u200d\U0001f469\u200d\U0001f467 \ufeff\u200b",  # ZWJ family, BOM, ZWSP
    "bmp-edges": "\ud7ff\ue000\uffff",
}


async def test_unicode_notes_are_kept_and_shown_on_every_database(
    any_stack: Any, any_slack_side: SlackSide
) -> None:
    wrong = []
    for days, (name, note) in enumerate(UNICODE_NOTES.items(), start=1):
        answer = await any_slack_side.ask(f"/code days {ITEM} {days} {note}")
        code = keypad_format(newest_event(any_stack).code_dec_string)
        # Bidi controls and zero-width characters are stripped where notes enter (item 15).
        shown = " ".join(visible(note).split())
        if code not in answer or shown not in answer or "could not record" in answer:
            wrong.append(f"{name}: {answer[:200]!r}")

    assert wrong == []


# -- huge button ids and callback data ---------------------------------------------------------


BOGUS_BUTTON_VALUES = {
    "17-chars": "A" * 17,
    "100k": "x" * 100_000,
    "path": "../../etc/passwd",
    "sql": "' OR 1=1 --",
    "nul": "\x00",
    "empty": "",
    "unicode": "é" * 16,
}


async def test_slack_clicks_on_bogus_button_ids_get_a_notice_and_change_nothing(
    stack: Any, slack_side: SlackSide
) -> None:
    before = await rows(stack.engine)
    statuses = {}
    for name, value in BOGUS_BUTTON_VALUES.items():
        body = encode_payload(block_actions_payload("erm:run", value))
        statuses[name] = (await slack_side.post(body, signed_headers(body))).status_code
    await slack_side.adapter.drain(5.0)

    assert statuses == dict.fromkeys(BOGUS_BUTTON_VALUES, 200)
    notices = slack_side.fake.posts()
    assert len(notices) == len(BOGUS_BUTTON_VALUES)
    for notice in notices:
        assert "button" in notice.text.lower()
        assert_clean(notice.text)
    assert await rows(stack.engine) == before


BOGUS_CALLBACK_DATA = {
    "64-bytes": "b:" + "A" * 62,
    "5000": "b:" + "x" * 5000,
    "empty-id": "b:",
    "no-prefix": "nonsense",
    "nul": "b:\x00",
    "unicode": "b:" + "é" * 30,
}


async def test_telegram_presses_with_bogus_callback_data_are_answered_and_change_nothing(
    stack: Any, telegram_side: TelegramSide
) -> None:
    fake = telegram_side.fake
    card = await _card(telegram_side)
    before = await rows(stack.engine)
    statuses = {}
    for name, data in BOGUS_CALLBACK_DATA.items():
        update = fake.callback_update(TELEGRAM_AGENT, card, data)
        statuses[name] = (await telegram_side.post(update)).status_code
    await fake.wait_until(
        lambda: len(fake.answers()) == len(BOGUS_CALLBACK_DATA), within=10.0, what="answers"
    )

    assert statuses == dict.fromkeys(BOGUS_CALLBACK_DATA, 200)
    for answer in fake.answers():
        assert "button" in str(answer.params.get("text", "")).lower()
    assert fake.unanswered_queries() == []
    assert await rows(stack.engine) == before


async def _card(side: TelegramSide) -> Any:
    """A message of the bot's in the agent's chat, to press a (forged) button on."""
    await side.ask(TELEGRAM_AGENT, "/whoami")
    return side.fake.sent()[-1]


# -- malformed bodies --------------------------------------------------------------------------

TELEGRAM_BODIES = {
    "not-json": b"this is not json",
    "truncated": b'{"update_id": 1, "message": {',
    "array": b"[]",
    "string": b'"update"',
    "empty-object": b"{}",
    "update-id-text": b'{"update_id": "one"}',
    "huge-update-id": b'{"update_id": 1' + b"0" * 400 + b"}",
    "deep-nesting": b'{"update_id": 5, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "message-not-object": b'{"update_id": 6, "message": "hi"}',
    "text-not-string": (
        b'{"update_id": 7, "message": {"message_id": 1, "date": 0, "chat": {"id": 7101,'
        b' "type": "private"}, "from": {"id": 7101, "is_bot": false, "first_name": "N"},'
        b' "text": {"a": 1}}}'
    ),
    "invalid-utf8": b'{"update_id": 8, "x": "\xff\xfe"}',
}


async def test_malformed_telegram_webhook_bodies_are_refused_or_ignored_and_change_nothing(
    stack: Any, telegram_side: TelegramSide
) -> None:
    statuses = {}
    for name, body in TELEGRAM_BODIES.items():
        statuses[name] = (await telegram_side.post(None, raw=body)).status_code
    await settle()

    assert {name: status in (200, 400) for name, status in statuses.items()} == dict.fromkeys(
        TELEGRAM_BODIES, True
    ), statuses
    assert await rows(stack.engine) == {"requests": 0, "audit": 0, "codes": 0, "buttons": 0}
    assert telegram_side.fake.calls_to("sendMessage") == []


SLACK_BODIES = {
    "payload-not-json": urlencode({"payload": "{not json"}),
    "payload-array": urlencode({"payload": "[]"}),
    "payload-no-actions": urlencode({"payload": json.dumps({"type": "block_actions"})}),
    "actions-not-objects": urlencode(
        {"payload": json.dumps({"type": "block_actions", "actions": ["erm:run"]})}
    ),
    "user-not-object": urlencode(
        {
            "payload": json.dumps(
                {
                    **block_actions_payload("erm:run", "AAAAAAAAAAAA"),
                    "user": "U1",
                    "container": "x",
                    "channel": 5,
                }
            )
        }
    ),
    "unknown-type": urlencode({"payload": json.dumps({"type": "view_submission", "view": 1})}),
    "form-junk": "%%%&&&===",
    "no-command": urlencode({"text": "days X 3", "user_id": "U1"}),
}


async def test_malformed_slack_bodies_signed_correctly_get_400_and_change_nothing(
    stack: Any, slack_side: SlackSide
) -> None:
    statuses = {}
    for name, body in SLACK_BODIES.items():
        statuses[name] = (await slack_side.post(body, signed_headers(body))).status_code
    await slack_side.adapter.drain(5.0)
    await settle(0.1)

    assert {name: status < 500 for name, status in statuses.items()} == dict.fromkeys(
        SLACK_BODIES, True
    ), statuses
    assert await rows(stack.engine) == {"requests": 0, "audit": 0, "codes": 0, "buttons": 0}
    for call in slack_side.fake.posts():
        assert_clean(call.text)


def _notification(value: str) -> bytes:
    """A notification for our phone number around ``value`` (JSON text of the change's value)."""
    return (
        b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",'
        b'"value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"109876543210987"},'
        + value.encode()
        + b"}}]}]}"
    )


def _text_message(fields: str) -> bytes:
    return _notification(f'"messages":[{{{fields}}}]')


_FROM = f'"from":"{WHATSAPP_AGENT}","id":"wamid.bad","type":"text"'
_CODE = f'"text":{{"body":"code days {ITEM} 30"}}'

# Each is correctly signed: 200 (skipped, nothing to do) or 400 (not a notification); never a
# 500, never a command run.
WHATSAPP_BODIES = {
    "empty": b"",
    "not-json": b"this is not json",
    "truncated": b'{"object":"whatsapp_business_account","entry":[{',
    "array": b"[]",
    "string": b'"whatsapp_business_account"',
    "null": b"null",
    "empty-object": b"{}",
    "other-object": b'{"object":"page","entry":[]}',
    "entry-not-list": b'{"object":"whatsapp_business_account","entry":{"id":"1"}}',
    "changes-not-list": b'{"object":"whatsapp_business_account","entry":[{"changes":"x"}]}',
    "value-not-object": (
        b'{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",'
        b'"value":[1,2]}]}]}'
    ),
    "other-field": (
        b'{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"account_update",'
        b'"value":{"metadata":{"phone_number_id":"109876543210987"},"messages":[{"from":"'
        + WHATSAPP_AGENT.encode()
        + b'","id":"w","type":"text","text":{"body":"whoami"}}]}}]}]}'
    ),
    "metadata-not-object": _notification('"metadata":"109876543210987"').replace(
        b'"metadata":{"phone_number_id":"109876543210987"},', b""
    ),
    "messages-not-list": _notification('"messages":{"id":"w"}'),
    "message-not-object": _notification('"messages":["code days", 5, null]'),
    "no-from": _text_message(f'"id":"w1","type":"text",{_CODE}'),
    "from-with-plus": _text_message(f'"from":"+{WHATSAPP_AGENT}","id":"w2","type":"text",{_CODE}'),
    "from-number": _text_message(f'"from":{WHATSAPP_AGENT},"id":"w3","type":"text",{_CODE}'),
    "from-16-digits": _text_message(f'"from":"{"9" * 16}","id":"w4","type":"text",{_CODE}'),
    "from-other-script-digits": _text_message(
        f'"from":"\\u0662\\u0665\\u0664\\u0667\\u0660\\u0660","id":"w5","type":"text",{_CODE}'
    ),
    "id-not-string": _text_message(f'"from":"{WHATSAPP_AGENT}","id":7,"type":"text",{_CODE}'),
    "id-empty": _text_message(f'"from":"{WHATSAPP_AGENT}","id":"","type":"text",{_CODE}'),
    "id-10k": _text_message(
        f'"from":"{WHATSAPP_AGENT}","id":"{"w" * 10_000}","type":"text",{_CODE}'
    ),
    "text-not-object": _text_message(f'{_FROM},"text":"code days {ITEM} 30"'),
    "body-not-string": _text_message(f'{_FROM},"text":{{"body":["code","days"]}}'),
    "interactive-not-object": _text_message(
        f'"from":"{WHATSAPP_AGENT}","id":"w6","type":"interactive","interactive":[]'
    ),
    "button-id-not-string": _text_message(
        f'"from":"{WHATSAPP_AGENT}","id":"w7","type":"interactive",'
        '"interactive":{"type":"button_reply","button_reply":{"id":{"b":1}}}'
    ),
    "statuses-junk": _notification('"statuses":[1,"x",{"id":5},{"status":"failed"},{}]'),
    "status-errors-junk": _notification(
        '"statuses":[{"id":"wamid.x","status":"failed","errors":[{"code":"131047"},7,null]}]'
    ),
    "contacts-junk": _notification('"contacts":[{"wa_id":5,"profile":"x"},"y"],"messages":[]'),
    "huge-number": b'{"object":"whatsapp_business_account","entry":[' + b"1" * 5000 + b"]}",
    "nan": b'{"object":"whatsapp_business_account","entry":[NaN, Infinity]}',
    "deep-nesting": (
        b'{"object":"whatsapp_business_account","entry":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    ),
    "invalid-utf8": b'{"object":"whatsapp_business_account","entry":[],"x":"\xff\xfe"}',
    "utf16": '{"object":"whatsapp_business_account","entry":[]}'.encode("utf-16"),
}


async def test_malformed_whatsapp_notifications_signed_correctly_change_nothing(
    stack: Any, whatsapp_side: WhatsAppSide
) -> None:
    whatsapp_side.fake.open_window(WHATSAPP_AGENT)  # a reply, if any, would be delivered
    statuses = {}
    for name, body in WHATSAPP_BODIES.items():
        statuses[name] = (await whatsapp_side.deliver(body)).status_code
    await whatsapp_side.settle()
    await settle(0.1)

    assert {name: status in (200, 400) for name, status in statuses.items()} == dict.fromkeys(
        WHATSAPP_BODIES, True
    ), statuses
    assert await rows(stack.engine) == {"requests": 0, "audit": 0, "codes": 0, "buttons": 0}
    assert whatsapp_side.fake.sent() == []


@pytest.mark.parametrize("timestamp", ['"soon"', '"-5"', f'"{"9" * 400}"', "[]", "null"])
async def test_whatsapp_messages_with_a_bad_timestamp_still_run_once(
    stack: Any, whatsapp_side: WhatsAppSide, timestamp: str
) -> None:
    """The control of the table above: a message that is whole but for its timestamp is
    answered (Meta's clock is no reason to drop a command), so the table's rows were skipped
    for what is wrong with them, not for a detail the rig got wrong."""
    whatsapp_side.fake.open_window(WHATSAPP_AGENT)
    before = stack.code_events(ITEM)
    body = _text_message(f'{_FROM},"timestamp":{timestamp},{_CODE}')

    assert (await whatsapp_side.deliver(body)).status_code == 200
    await whatsapp_side.settle()

    [reply] = whatsapp_side.fake.sent(WHATSAPP_AGENT)
    assert "```" in reply.text
    assert stack.code_events(ITEM) == before + 1


async def test_an_over_long_whatsapp_message_gets_a_clear_error_and_changes_nothing(
    stack: Any, whatsapp_side: WhatsAppSide
) -> None:
    before = stack.code_events(ITEM)

    reply = await whatsapp_side.ask(f"code days {ITEM} 30 " + "é" * 5000)

    assert "That message is too long" in reply.text
    assert_clean(reply.text)
    assert len(reply.text) < 1000  # the input is not echoed back
    assert stack.code_events(ITEM) == before


async def test_nul_and_markup_in_a_whatsapp_message_and_name_are_answered_cleanly(
    any_stack: Any, any_whatsapp_side: WhatsAppSide
) -> None:
    reply = await any_whatsapp_side.ask("/whoami\x00\x07", name="*Ne\x00ema* ```x``` <b>")

    assert_clean(reply.text)
    assert "\x00" not in reply.text
    assert f"whatsapp:{WHATSAPP_AGENT}" in reply.text
