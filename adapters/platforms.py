"""The platforms erm-bot knows: the one place that lists them.

Serve, doctor, the web app's request context and the user-id rules loop over :data:`PLATFORMS`;
no other module outside a platform's own folder names one. To add a platform, see "Adding a
platform" in the README.
"""

from __future__ import annotations

from typing import Any

from adapters import console, slack, telegram, whatsapp
from adapters.platform import Platform

# Each reads its own config type from the settings: Any here, checked inside each platform.
PLATFORMS: tuple[Platform[Any], ...] = (
    slack.PLATFORM,
    telegram.PLATFORM,
    whatsapp.PLATFORM,
    console.PLATFORM,
)
