"""Button actions as a registry: what a stored button does when pressed.

A button carries only a short id; its action and payload are stored
(:mod:`bot.storage.buttons`). The dispatcher looks the action up here. The core's own actions
are below; the approval flow adds ``approve`` and ``deny`` (:mod:`bot.approvals.actions`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.core import Core
from bot.messages import Action, Click, Pressed, Reply, Request, Tone
from bot.ports import Runner
from bot.storage.buttons import StoredButton


@dataclass(frozen=True, slots=True)
class Press:
    """One press of a stored button: by whom, which button, and how to run a command for it."""

    core: Core
    click: Click
    stored: StoredButton
    run: Runner  # the dispatcher, within the press's turn (not admitted again)

    @property
    def value(self) -> str:
        return str(self.stored.payload.get("value") or "")

    def request(self, text: str, key: str, *, confirmed: bool = False) -> Request:
        """``text`` as a request of the presser's, from the chat the button was pressed in."""
        click = self.click
        return Request(
            click.identity,
            text,
            request_key=key,
            chat_id=click.chat_id,
            private_chat=click.private_chat,
            confirmed=confirmed,
        )


ButtonAction = Callable[[Press], Awaitable[Pressed]]


async def run_button(press: Press) -> Pressed:
    """Run the stored command as the presser (with their permissions): paging and the like.

    The presser's own card is replaced by the answer (unless the answer is private and the card
    is not); anyone else gets the answer as a new message.
    """
    reply = await press.run(press.request(press.value, press.click.request_key))
    private_card = bool(press.stored.payload.get("private"))
    if press.stored.owner == press.click.identity.key and (private_card or not reply.private_only):
        return Pressed(card=reply)
    return Pressed(reply=reply)


async def _owner_decides(press: Press, decision: str) -> Pressed | None:
    """Decide the card for its owner; a ``Pressed`` refusal when someone else or too late."""
    click, stored, core = press.click, press.stored, press.core
    if stored.owner != click.identity.key:
        return Pressed(notice="Only the person who sent this command can answer it.")
    outcome = await core.buttons.decide(
        stored.card, decision, by=click.identity.label, now=core.clock()
    )
    if not outcome.won:
        return Pressed(notice=f"Already {outcome.decision} at {outcome.decided_at:%H:%M} UTC.")
    return None


async def confirm_button(press: Press) -> Pressed:
    refused = await _owner_decides(press, "confirmed")
    if refused is not None:
        return refused
    text = press.value
    # The card id makes the key: however the confirmation is delivered, it runs once.
    reply = await press.run(press.request(text, f"confirm:{press.stored.card}", confirmed=True))
    return Pressed(reply=reply, card=Reply(title=f"Confirmed: {text}", tone=Tone.INFO))


async def cancel_button(press: Press) -> Pressed:
    refused = await _owner_decides(press, "cancelled")
    if refused is not None:
        return refused
    return Pressed(card=Reply(title=f"Cancelled: {press.value}", lines=("Nothing was issued.",)))


CORE_ACTIONS: Mapping[Action, ButtonAction] = {
    Action.RUN: run_button,
    Action.CONFIRM: confirm_button,
    Action.CANCEL: cancel_button,
}


class ButtonActions:
    """The registry: one handler per :class:`Action`, each registered once."""

    def __init__(self, *groups: Mapping[Action, ButtonAction]) -> None:
        self._actions: dict[str, ButtonAction] = {}
        for group in groups:
            for action, handler in group.items():
                self.register(action, handler)

    def register(self, action: Action, handler: ButtonAction) -> None:
        if action in self._actions:
            raise ValueError(f"button action {action.value!r} is registered already")
        self._actions[action.value] = handler

    def get(self, action: str) -> ButtonAction | None:
        """The handler of a stored button's action; None for an action no longer known."""
        return self._actions.get(action)
