"""A stand-in for the Omnivoltaic ERM GraphQL API, for demos, tests and benchmarks.

It serves the schema of ``shared/erm-api.md`` §6 with seeded data (:mod:`.seed`), the code policy
rules and code formats of §3/§5 (:mod:`.state`, :mod:`.codes`), Apollo-shaped errors (§4) and
fault injection (:mod:`.faults`). Typical use::

    state = seed_state()
    app = create_app(state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http: ...
    async with serve(app) as url: ...          # the same over real loopback HTTP
"""

from erm.sandbox.app import create_app
from erm.sandbox.errors import SandboxError
from erm.sandbox.faults import ConnectionDroppedError, FaultConfig
from erm.sandbox.seed import (
    ACME,
    DEMO_DISTRIBUTORS,
    FLEET_ANGAZA,
    FLEET_DEFAULT,
    FLEET_KANO,
    FLEET_LAGOS,
    FLEET_OPEN,
    FLEET_STRICT,
    OPEN_ACP1_OEM_ID,
    OPEN_OPENTOKEN_OEM_ID,
    SUNBRIGHT,
    DemoCredentials,
    seed_state,
)
from erm.sandbox.server import run_sandbox, serve
from erm.sandbox.state import SandboxConfig, SandboxState

__all__ = [
    "ACME",
    "DEMO_DISTRIBUTORS",
    "FLEET_ANGAZA",
    "FLEET_DEFAULT",
    "FLEET_KANO",
    "FLEET_LAGOS",
    "FLEET_OPEN",
    "FLEET_STRICT",
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
