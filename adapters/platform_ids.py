"""What a user id looks like on each platform, for the core to check ids typed by people.

An admin types ``/grant telegram:abc agent`` or ``erm-bot users grant slack:u0123 admin acme``:
a grant to an id that cannot exist is a grant nobody can use (and a Telegram private message to
a non-numeric id fails later, far from the typo). The core cannot name platforms, so each
platform states its rule (``Platform.user_ids``) and the composition root hands them to
``bot.permissions.Permissions``.
"""

from __future__ import annotations

from adapters.platforms import PLATFORMS
from bot.permissions import UserIdRule

USER_IDS: dict[str, UserIdRule] = {platform.name: platform.user_ids for platform in PLATFORMS}
"""The platforms an identity can be on, each with the form of its user ids."""
