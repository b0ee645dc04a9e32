"""The knobs of one sandbox instance.

Its own module because both :mod:`.state` and :mod:`.auth` read it: the state owns the logins,
and the logins read the token lifetime and the clock, so neither may import the other for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SandboxConfig"]


@dataclass(slots=True)
class SandboxConfig:
    """Knobs of one sandbox instance."""

    token_ttl_seconds: int = 86_400
    """Production's access tokens live exactly 24 hours (§8)."""
    clock: Callable[[], float] = time.time
    """Epoch seconds; the only source of time for tokens, rules and ``createdAt``."""
    code_secret: bytes = b"erm-sandbox-acp1-stand-in-secret"
    """Key of the stand-in ACP1 recipe; fixed so the same seed gives the same codes."""
