"""What a user id looks like on each platform, for the core to check ids typed by people.

An admin types ``/grant telegram:abc agent`` or ``erm-bot users grant slack:u0123 admin acme``:
a grant to an id that cannot exist is a grant nobody can use (and a Telegram private message to
a non-numeric id fails later, far from the typo). The core cannot name platforms, so the rules
live here and the composition root hands them to ``bot.permissions.Permissions``.

Sources: Telegram user ids are positive integers (Bot API ``User.id``, at most 52 significant
bits); Slack user ids start with U, or W on Enterprise Grid, followed by capitals and digits
(platforms.md); console users are the one word typed after ``@`` (``adapters.console``).
"""

from __future__ import annotations

import re

from bot.permissions import UserIdRule

USER_IDS: dict[str, UserIdRule] = {
    "slack": UserIdRule(
        re.compile(r"[UW][A-Z0-9]{2,31}"),
        "Slack user ids are U or W, then capital letters and digits, e.g. slack:U0123ABCD",
    ),
    "telegram": UserIdRule(
        re.compile(r"[1-9][0-9]{0,15}"),
        "Telegram user ids are positive whole numbers, e.g. telegram:123456789",
    ),
    "console": UserIdRule(
        re.compile(r"[A-Za-z0-9_.-]{1,64}"),
        "console users are one word of letters, digits, _ . or -, e.g. console:agent",
    ),
}
"""The platforms an identity can be on, each with the form of its user ids."""
