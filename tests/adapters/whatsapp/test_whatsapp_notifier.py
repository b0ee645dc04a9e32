"""Messages the bot starts (an approval decided, a code ready): free-form inside the 24-hour
window, the configured template outside it; the invite link; doctor."""

from __future__ import annotations

import pytest
from fakes.whatsapp import REENGAGEMENT, FakeWhatsApp
from whatsapp_rig import AGENT, ServeFactory, StackLike, config_for, settle, wait_sent

from adapters.findings import Finding, Status
from adapters.whatsapp.config import Templates
from adapters.whatsapp.doctor import check
from bot.messages import Code, Reply
from bot.ports import NotifyError

CODE_READY = Reply(title="Code ready", codes=(Code("*123 456#", "123456"),))
TEMPLATES = Templates(code_ready="erm_code_ready", decision="erm_decision")
DENIED = Reply(title="Request R1 was denied", lines=("Your code for X was denied.",))


async def test_inside_the_window_a_private_message_is_free_form(
    stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    await serve(stack)
    fake.open_window(AGENT)
    await stack.dispatcher.core.notifiers["whatsapp"].send_private(AGENT, CODE_READY)
    [sent] = fake.sent(AGENT)
    assert sent.type == "text"
    assert "```*123 456#```" in sent.text


async def test_outside_the_window_the_template_for_its_kind_goes_instead(
    stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    fake.add_template("erm_code_ready", params=1)
    fake.add_template("erm_decision", params=1)
    await serve(stack, templates=TEMPLATES)
    notifier = stack.dispatcher.core.notifiers["whatsapp"]

    await notifier.send_private(AGENT, CODE_READY)
    await notifier.send_private(AGENT, DENIED)

    code, decision = fake.sent(AGENT)
    assert (code.template, code.params) == ("erm_code_ready", ["Code ready · *123 456#"])
    assert decision.template == "erm_decision"
    assert "\n" not in decision.params[0]


async def test_outside_the_window_without_a_template_or_a_store_the_core_hears_it_was_not_sent(
    stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    stack.dispatcher.core.held = None  # with one, it is kept: test_whatsapp_held.py
    await serve(stack)
    with pytest.raises(NotifyError, match="24-hour window"):
        await stack.dispatcher.core.notifiers["whatsapp"].send_private(AGENT, CODE_READY)
    assert fake.sent(AGENT) == []


async def test_a_later_failed_status_for_the_window_sends_the_template(
    stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    """The real Cloud API may accept a free-form message and fail it afterwards (131047)."""
    fake.add_template("erm_code_ready", params=1)
    served = await serve(stack, templates=TEMPLATES)
    fake.open_window(AGENT)
    await stack.dispatcher.core.notifiers["whatsapp"].send_private(AGENT, CODE_READY)
    [accepted] = fake.sent(AGENT)

    await fake.deliver(served.url, fake.status(accepted.id, AGENT, "failed", errors=[REENGAGEMENT]))
    await settle(served.adapter)
    _, template = await wait_sent(fake, AGENT, 2)
    assert template.template == "erm_code_ready"


async def test_no_group_cards_on_whatsapp(stack: StackLike, serve: ServeFactory) -> None:
    await serve(stack)
    with pytest.raises(NotifyError, match="Slack or Telegram"):
        await stack.dispatcher.core.notifiers["whatsapp"].post_card("x", DENIED)


async def test_invites_link_to_the_business_number(
    stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    served = await serve(stack)  # no WHATSAPP_BUSINESS_NUMBER: learned at start
    link = stack.dispatcher.core.deep_links["whatsapp"]
    assert link == f"https://wa.me/{fake.business_number}?text=start%20{{code}}"
    assert served.adapter.deep_link == link


async def test_doctor_checks_token_and_phone_number_id(fake: FakeWhatsApp) -> None:
    found: list[tuple[Status, str, str]] = []

    def report(status: Status, name: str, detail: str, fix: str = "") -> Finding:
        found.append((status, name, detail))
        return Finding(status, name, detail, fix)

    await check(config_for(fake), report)
    await check(config_for(fake, token="EAAGwrong"), report)
    await check(config_for(fake, phone_number_id="123"), report)

    (ok, _, detail), (bad_token, _, why), (bad_id, _, _) = found
    assert ok is Status.OK
    assert fake.verified_name in detail
    assert bad_token is Status.FAIL
    assert "WHATSAPP_TOKEN" in why
    assert bad_id is Status.FAIL
    assert "EAAGwrong" not in repr(found)
