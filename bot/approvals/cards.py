"""What approval cards and approval messages say (pure rendering: no storage, no platform).

People are named with :func:`person`: the display name the platform gave, then the identity's own
``platform:id`` last. A display name is whatever its owner typed, so it is never trusted to say who
someone is: a supervisor on one platform who calls himself "Dennis (other:UADMA)" is
shown as ``Dennis (other:UADMA) · chat:12345``, the real id in the place where ids always are.
"""

from __future__ import annotations

from bot.messages import Action, Button, Field, Identity, Reply, Style, Tone, Visibility
from bot.storage.approval_tables import Approval, Status

ISSUED = "code issued"
INTERRUPTED = "interrupted"  # the run was cut off (a process died): a code may exist
SEPARATOR = " · "


def person(key: str | None, name: str | None = None) -> str:
    """``Dennis · chat:12345``; just the id when there is no name (or the name is the id).

    The separator is taken out of names, so the text after the last `` · `` is always the id.
    """
    shown = " ".join((name or "").replace("·", " ").split())
    key = key or "?"
    if not shown or shown == key:
        return key
    return f"{shown}{SEPARATOR}{key}"


def who(identity: Identity) -> str:
    return person(identity.key, identity.name)


def decider(approval: Approval) -> str:
    """Who decided (or cancelled) ``approval``, by id as well as by name."""
    return person(approval.decided_by, approval.decided_by_name)


def pending_card(approval: Approval, *, reminder: bool = False) -> Reply:
    """The card approvers see while the request is pending (buttons not yet stored)."""
    head = "Reminder: approval needed" if reminder else "Approval needed"
    fields = [
        Field("Request", approval.id),
        Field("Requested by", who(approval.requester)),
        Field("Item", approval.item_label),
    ]
    if approval.client_name:
        fields.append(Field("Client", approval.client_name))
    account = approval.context.get("account")
    if account:
        fields.append(Field("Account", str(account)))
    if approval.note:
        fields.append(Field("Note", approval.note))
    fields.append(Field("Why", approval.needs))
    fields.append(Field("Expires", f"{approval.expires_at:%Y-%m-%d %H:%M} UTC"))
    codes = approval.context.get("codes")
    if approval.context.get("codes_unreadable"):
        last = "Last codes: could not be read from ERM."
    elif codes:
        last = "Last codes: " + "; ".join(str(c) for c in codes)
    else:
        last = "Last codes: none."
    return Reply(
        title=f"{head}: {approval.what} for {approval.item_label}",
        lines=(last,),
        fields=tuple(fields),
        notes=(
            f"Or type /approvals approve {approval.id} or /approvals deny {approval.id} REASON",
        ),
        buttons=(
            Button("Approve", Action.APPROVE, approval.id, Style.PRIMARY),
            Button("Deny", Action.DENY, f"ask:{approval.id}", Style.DANGER),
        ),
        visibility=Visibility.PUBLIC,
        tone=Tone.WARNING if reminder else Tone.INFO,
    )


def final_card(approval: Approval) -> Reply:
    """The card once decided: who decided what, when; no buttons, never a code."""
    at = f"{approval.decided_at:%H:%M} UTC" if approval.decided_at else "?"
    by = decider(approval)
    requester = who(approval.requester)
    lines: list[str]
    tone = Tone.OK
    if approval.status is Status.APPROVED:
        title = "Approved"
        lines = [f"Approved by {by} at {at}."]
        if approval.result is None:
            lines.append("Issuing the code…")
        elif approval.result == INTERRUPTED:
            lines.append(
                "The run was interrupted: a code may exist. "
                f"{requester} was asked to check /history before asking again."
            )
            tone = Tone.WARNING
        elif approval.result == ISSUED:
            if approval.delivered_at is not None:
                lines.append(f"The code was sent privately to {requester}.")
            else:
                lines.append(f"The code was issued; {requester} can see it with /resend.")
        else:
            lines.append(f"The code was not issued: {approval.result}")
            tone = Tone.WARNING
    elif approval.status is Status.DENIED:
        title = "Denied"
        lines = [f"Denied by {by} at {at}.", f"Reason: {approval.reason or 'none given'}."]
        tone = Tone.INFO
    elif approval.status is Status.CANCELLED:
        title = "Cancelled"
        lines = [f"Cancelled by {requester} at {at}. Nothing was issued."]
        tone = Tone.INFO
    elif approval.status is Status.EXPIRED:
        title = "Expired"
        lines = [f"No decision by {approval.expires_at:%H:%M} UTC. Nothing was issued."]
        tone = Tone.INFO
    else:
        return pending_card(approval)
    return Reply(
        title=f"{title}: {approval.what} for {approval.item_label}",
        lines=tuple(lines),
        fields=(
            Field("Request", approval.id),
            Field("Requested by", who(approval.requester)),
        ),
        visibility=Visibility.PUBLIC,
        tone=tone,
    )


def deny_prompt(approval: Approval) -> Reply:
    """The card after Deny: deny without a reason, or go back; a reason is typed."""
    return Reply(
        title=f"Deny {approval.what} for {approval.item_label}?",
        lines=(f"To give a reason, type: /approvals deny {approval.id} REASON",),
        fields=(
            Field("Request", approval.id),
            Field("Requested by", who(approval.requester)),
        ),
        buttons=(
            Button("Deny without reason", Action.DENY, f"now:{approval.id}", Style.DANGER),
            Button("Back", Action.DENY, f"back:{approval.id}"),
        ),
        visibility=Visibility.PUBLIC,
        tone=Tone.WARNING,
    )


MAX_PENDING_REPLY = 200
"""Bytes (UTF-8) of the requester's pending reply as plain text: read on a phone, often in a
group's private reply, so only what the requester needs (supervisors see the rest on the card)."""


def pending_reply(approval: Approval, *, again: bool, seen: bool = True) -> Reply:
    """What the requester is told when the request goes to approval (or already waits): that it
    waits for a supervisor, and how to cancel it (its id, once); what and why as room allows.
    ``seen``: False when no approval chat got it, so no supervisor hears of it unless told."""
    title = f"{'Already waiting' if again else 'Waiting'} for a supervisor's approval"
    cancel = f"To cancel: /approvals cancel {approval.id}"
    about = f"{approval.what} for {approval.item_label}: {approval.needs}."
    after = (
        "Once approved, the code comes to you privately."
        if seen
        else "Tell a supervisor: it waits in their /approvals."
    )
    room = MAX_PENDING_REPLY - _size(title, cancel)
    lines: list[str] = []
    for line in (_cut(about, room - 1), after):  # each line costs a newline too
        if line and _size(line) + 1 <= room:
            lines.append(line)
            room -= _size(line) + 1
    return Reply(
        title=title,
        lines=(*lines, cancel),
        tone=Tone.INFO,
        confidential=True,  # in a group: to the requester's private chat, like a code
    )


def _size(*parts: str) -> int:
    """The UTF-8 bytes of ``parts`` as :meth:`Reply.text` joins them (one per line)."""
    return len("\n".join(parts).encode())


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, cut with an ellipsis; empty when there is no
    room for a useful part of it."""
    if _size(text) <= limit:
        return text
    if limit < 30:
        return ""
    out = text.encode()[: limit - len("…".encode())].decode(errors="ignore")
    return out.rstrip() + "…"


def unreachable_notice(approval: Approval) -> Reply:
    """Told to the requester once when no approval chat could be reached for their request."""
    return Reply(
        title=f"Request {approval.id}: the approval chat could not be reached",
        lines=(
            f"Your {approval.what} for {approval.item_label} is still waiting, but supervisors "
            "may not see it in their chat.",
            f"Ask a supervisor to type /approvals approve {approval.id} (they see it with "
            "/approvals).",
        ),
        notes=("The bot keeps trying to post it.",),
        tone=Tone.WARNING,
    )


def _oem(approval: Approval) -> str:
    return approval.item_label.split(" ", 1)[0]


def issued_notice(approval: Approval) -> Reply:
    """Told to the requester when an approved request turns out (after a restart) to have run."""
    return Reply(
        title=f"Request {approval.id}: your code was issued",
        lines=(
            f"Your approved {approval.what} for {approval.item_label} was issued.",
            f"See it with /resend {_oem(approval)}",
        ),
        tone=Tone.OK,
    )


def interrupted_notice(approval: Approval) -> Reply:
    """Told to the requester when an approved request was cut off while its code was made."""
    oem = _oem(approval)
    return Reply(
        title=f"Request {approval.id} was interrupted",
        lines=(
            f"Your approved {approval.what} for {approval.item_label} was cut off while its "
            "code was being made: a code may exist.",
            f"Check /history {oem} and /resend {oem} before asking again.",
        ),
        tone=Tone.WARNING,
    )
