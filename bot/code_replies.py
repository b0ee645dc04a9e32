"""What a person reads about a code: the code itself, or why there is none.

Shared by the code commands (:mod:`bot.commands.codes`) and crash recovery (:mod:`bot.recovery`),
so a code reaches its requester in one form whichever path found it.
"""

from __future__ import annotations

from datetime import datetime

from bot.messages import Code, Field, Reply, Tone, plural
from bot.storage.code_records import IssuedCodeRecord
from erm.models import CodeType, Item, keypad_format
from erm.reconcile import Settlement, Verdict

WHAT = {
    CodeType.DAYS: "adds days of use",
    CodeType.FREE: "unlocks the device for good",
    CodeType.RESET: "returns the device to the locked state",
}


def code_title(code_type: CodeType, days: int | None, item: Item) -> str:
    if code_type is CodeType.DAYS:
        return f"{days}-day code for {item.label}"
    return f"{code_type.name.capitalize()} code for {item.label}"


def code_command(code_type: CodeType, item: Item, days: int | None) -> str:
    """The command that asks for this code again (what a refusal tells the person to type)."""
    words = ["/code", code_type.name.lower(), item.oem_item_id]
    if code_type is CodeType.DAYS and days is not None:
        words.append(str(days))
    return " ".join(words)


def code_reply(
    title: str,
    record: IssuedCodeRecord,
    item: Item,
    *,
    notes: tuple[str, ...] = (),
    tone: Tone = Tone.OK,
) -> Reply:
    # What the title already says is not said again: a small screen shows the code sooner.
    fields = [] if item.label in title else [Field("Item", item.label)]
    if item.client_name or record.client_name:
        fields.append(Field("Client", item.client_name or record.client_name or ""))
    kind = CodeType(record.code_type)
    if code_title(kind, record.days, item) != title:
        days = record.days or 0
        fields.append(
            Field("Code", plural(days, "day") if kind is CodeType.DAYS else kind.name.lower())
        )
    if record.note:
        fields.append(Field("Note", record.note))
    return Reply(
        title=title,
        codes=(Code(keypad_format(record.code_dec), record.code_dec),),
        fields=tuple(fields),
        notes=notes,
        tone=tone,
    )


def unsettled(settled: Settlement) -> Reply:
    """What to say when the history shows no code for the request (yet)."""
    item = settled.pending.item
    if settled.verdict is Verdict.NONE:
        return Reply(
            title=f"No code was made for {item.label}.",
            lines=(
                "ERM never confirmed it, and its history shows no new code since.",
                "It is safe to ask again.",
            ),
            tone=Tone.WARNING,
        )
    if settled.verdict is Verdict.CHANGED and settled.other is not None:
        when = settled.other.created_at
        seen = f"a different code at {when:%H:%M} UTC" if when else "a different code"
        first = f"ERM's history shows {seen}, none like yours."
    else:
        first = "ERM's history could not be read to check."
    return Reply(
        title=f"ERM never confirmed your code for {item.label}.",
        lines=(first, f"Check /history {item.oem_item_id} before asking again."),
        tone=Tone.WARNING,
    )


def ago(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    if seconds < 86400:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''} ago"
    return f"on {then:%Y-%m-%d %H:%M} UTC"
