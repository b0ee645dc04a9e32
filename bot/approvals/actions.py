"""The Approve and Deny buttons of approval cards, for the registry of :mod:`bot.buttons`."""

from __future__ import annotations

from collections.abc import Mapping

from bot.approvals.service import service_of
from bot.buttons import ButtonAction, Press
from bot.messages import Action, Pressed

# ----------------------------------------------------------------------------------


async def approve_button(press: Press) -> Pressed:
    """Approve: the outcome is a private notice; every card is edited by the service."""
    service, click = service_of(press.core), press.click
    notice = await service.approve(
        click.identity, press.value, run=press.run, chat_id=click.chat_id
    )
    return Pressed(notice=notice)


async def deny_button(press: Press) -> Pressed:
    """Deny in two steps: ``ask`` turns the card into "Deny without reason" / "Back"."""
    service, click = service_of(press.core), press.click
    step, _, approval_id = press.value.partition(":")
    if step == "now":
        return Pressed(
            notice=await service.deny(click.identity, approval_id, None, chat_id=click.chat_id)
        )
    approval = await service.load_for(click.identity, approval_id)
    if step == "back":
        return Pressed(card=await service.pending_card(approval))
    await service.check_decider(click.identity, approval, click.chat_id)
    return Pressed(card=await service.deny_prompt(approval))


APPROVAL_ACTIONS: Mapping[Action, ButtonAction] = {
    Action.APPROVE: approve_button,
    Action.DENY: deny_button,
}
