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


def pending_reply(approval: Approval, *, posted: int | None, again: bool) -> Reply:
    """What the requester is told when the request goes to approval (or already waits)."""
    title = (
        f"Already waiting for approval: {approval.id}"
        if again
        else f"Pending approval {approval.id}"
    )
    notes = []
    if posted == 0:
        notes.append(
            "No approval channel got it yet: a supervisor sees it with /approvals "
            "(or sets a channel with /approvals here)."
        )
    notes.append(f"Changed your mind? /approvals cancel {approval.id}")
    return Reply(
        title=title,
        lines=(
            f"Your {approval.what} for {approval.item_label} needs a supervisor's approval "
            f"({approval.needs}).",
            "Nothing has been issued yet. Once approved, the code comes to you in a private "
            "message.",
        ),
        fields=(
            Field("Request", approval.id),
            Field("Expires", f"{approval.expires_at:%Y-%m-%d %H:%M} UTC"),
        ),
        notes=tuple(notes),
        tone=Tone.INFO,
        confidential=True,  # in a group: to the requester's private chat, like a code
    )


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
