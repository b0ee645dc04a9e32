"""What arrives from Telegram: a message's command text, the shape of an update, the menu."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import cast

from telegram import BotCommand, Chat, Update, User

from bot.registry import Command

_COMMAND_WORD = re.compile(r"[a-z0-9_]{1,32}")
_COMMAND = re.compile(r"^/([^\s@]+)(?:@(\S*))?(?:\s+(.*))?$", re.DOTALL)


def command_text(text: str, username: str, *, ours: Callable[[str], bool]) -> str | None:
    """The core's command text for a Telegram message, or None when it is not for this bot.

    ``/code@thisbot days X 30`` -> ``/code days X 30``; ``/code@otherbot ...`` -> None. Without
    ``@bot`` a command is taken when ``ours(word)`` says the word is one of the bot's commands
    (in a group several bots may share a word like ``/help``; the caller decides).
    """
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    word, target, rest = match.group(1), match.group(2), match.group(3)
    if target is not None:
        if target.lower() != username.lower():
            return None
    elif not ours(word):
        return None
    rest = (rest or "").strip()
    return f"/{word} {rest}" if rest else f"/{word}"


def malformed(update: Update) -> str | None:
    """Why an update cannot be handled, or None. Telegram never sends these; PTB's parsing does
    not check types, so a forged or broken update (text that is a list, a message without a
    chat) would otherwise fail deep in a handler with a traceback. (Hence ``object``: the
    annotations are what Telegram promises, not what arrived.)"""
    message, query = update.message, update.callback_query
    if message is not None:
        if not _has_int_id(message.chat, Chat):
            return "a message without a chat"
        if not isinstance(cast(object, message.chat.type), str):
            return "a message in a chat of no type"
        text: object = message.text
        if text is not None and not isinstance(text, str):
            return "a message whose text is not text"
        if message.from_user is not None and not _has_int_id(message.from_user, User):
            return "a message from no one"
    if query is not None:
        query_id: object = query.id
        if not isinstance(query_id, str) or not query_id:
            return "a button press without an id"
        if not _has_int_id(query.from_user, User):
            return "a button press from no one"
        data: object = query.data
        if data is not None and not isinstance(data, str):
            return "a button press whose data is not text"
        if query.message is not None and not _has_int_id(query.message.chat, Chat):
            return "a button press on a message without a chat"
    return None


def _has_int_id(value: object, kind: type[Chat] | type[User]) -> bool:
    return isinstance(value, kind) and isinstance(cast(object, value.id), int)


def bot_commands(commands: Sequence[Command]) -> list[BotCommand]:
    """One menu entry per top-level command word, with its help text."""
    words: dict[str, list[Command]] = {}
    for command in commands:
        words.setdefault(command.path[0], []).append(command)
    menu: list[BotCommand] = []
    for word, group in words.items():
        if not _COMMAND_WORD.fullmatch(word):
            continue
        bare = next((c for c in group if len(c.path) == 1), None)
        if bare is not None:  # tapped in the menu, the word alone runs: say what it does
            description = bare.help
        else:
            subs = ", ".join(c.path[1] for c in group if len(c.path) > 1)
            description = f"{subs} (see /help {word})"
        menu.append(BotCommand(word, description[:256] or word))
    return menu[:100]
