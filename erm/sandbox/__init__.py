"""A stand-in for the Omnivoltaic ERM GraphQL API, for demos, tests and benchmarks.

It serves the schema of ``shared/erm-api.md`` §6 with seeded data (:mod:`.seed`), the code policy
rules and code formats of §3/§5 (:mod:`.rules`, :mod:`.codes`), and answers the way production is
known to answer (§8): NestJS/Apollo error shapes (:mod:`.errors`), 24-hour RS256 tokens naming the
distributor a login acts for (:mod:`.auth`, :mod:`.tokens`), migrated legacy history; plus fault
injection (:mod:`.faults`). Typical use::

    state = seed_state()
    app = create_app(state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http: ...
    async with serve(app) as url: ...          # the same over real loopback HTTP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from erm.sandbox.app import create_app
    from erm.sandbox.config import SandboxConfig
    from erm.sandbox.errors import SandboxError
    from erm.sandbox.faults import ConnectionDroppedError, FaultConfig
    from erm.sandbox.seed import (
        ACME,
        ACME_SERVICER,
        ACME_STAFF,
        DEMO_DISTRIBUTORS,
        FLEET_ANGAZA,
        FLEET_DEFAULT,
        FLEET_KANO,
        FLEET_LAGOS,
        FLEET_OPEN,
        FLEET_STRICT,
        MIGRATED_ITEMS,
        OPEN_ACP1_OEM_ID,
        OPEN_OPENTOKEN_OEM_ID,
        SUNBRIGHT,
        DemoCredentials,
        seed_state,
    )
    from erm.sandbox.server import run_sandbox, serve
    from erm.sandbox.state import SandboxState

# Loaded on first use (PEP 562): `erm-bot serve` imports erm.sandbox.faults through its CLI,
# and the whole sandbox (graphql-core, the seed) would add ~6 MB to the bot's memory. The parts
# that hold the names below, the lighter first.
_PARTS = ("errors", "config", "faults", "state", "seed", "server", "app")

__all__ = [
    "ACME",
    "ACME_SERVICER",
    "ACME_STAFF",
    "DEMO_DISTRIBUTORS",
    "FLEET_ANGAZA",
    "FLEET_DEFAULT",
    "FLEET_KANO",
    "FLEET_LAGOS",
    "FLEET_OPEN",
    "FLEET_STRICT",
    "MIGRATED_ITEMS",
    "OPEN_ACP1_OEM_ID",
    "OPEN_OPENTOKEN_OEM_ID",
    "SUNBRIGHT",
    "ConnectionDroppedError",
    "DemoCredentials",
    "FaultConfig",
    "SandboxConfig",
    "SandboxError",
    "SandboxState",
    "create_app",
    "run_sandbox",
    "seed_state",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        for part in _PARTS:
            module = importlib.import_module(f"{__name__}.{part}")
            if hasattr(module, name):
                value = getattr(module, name)
                globals()[name] = value  # the next lookup is a plain one
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
