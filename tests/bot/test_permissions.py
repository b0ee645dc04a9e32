"""``Permissions.allowed`` (the dispatcher's no-await path) never grants what ``check`` refuses.

The dispatcher counts rate limits in the transaction that read the grants when ``allowed`` says
the command may run; otherwise ``check`` decides. Both apply the same rules (``_decide``); this
checks that over every command, role set, wanted distributor and default.
"""

from __future__ import annotations

import asyncio
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.commands import COMMANDS
from bot.errors import UserError
from bot.messages import Identity
from bot.permissions import Access, Permissions
from bot.roles import Role
from bot.storage.grants import GrantStore, KnownUser

DISTRIBUTORS = ("acme", "sunbright", "volta")


class _Grants:
    """What ``Permissions`` reads from the grants beyond ``known``: a default and the admins."""

    def __init__(self, default: str | None) -> None:
        self.default = default

    async def default_distributor(self, platform: str, user_id: str) -> str | None:
        return self.default

    async def holders(self, distributor: str, min_role: Role) -> list[object]:
        return []


async def _names() -> list[str]:
    return list(DISTRIBUTORS)


async def _checked(permissions: Permissions, *args: object) -> Access | None:
    try:
        return await permissions.check(*args)  # type: ignore[arg-type]
    except UserError:
        return None


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(COMMANDS),
    roles=st.dictionaries(st.sampled_from(DISTRIBUTORS), st.sampled_from(list(Role)), max_size=3),
    wanted=st.none() | st.sampled_from(DISTRIBUTORS),
    default=st.none() | st.sampled_from(DISTRIBUTORS),
    default_read=st.booleans(),
    bootstrap=st.booleans(),
)
def test_allowed_agrees_with_check(
    command: object,
    roles: dict[str, Role],
    wanted: str | None,
    default: str | None,
    default_read: bool,
    bootstrap: bool,
) -> None:
    identity = Identity("slack", "U1")
    admins = ["slack:U1"] if bootstrap else []
    permissions = Permissions(cast(GrantStore, _Grants(default)), _names, admins)
    known = KnownUser(roles, default if default_read else None, default_read)

    fast = permissions.allowed(identity, command, wanted, known)  # type: ignore[arg-type]
    full = asyncio.run(_checked(permissions, identity, command, wanted, known))

    if fast is not None:
        assert fast == full
    elif not bootstrap and full is not None and (default_read or wanted or len(roles) < 2):
        raise AssertionError("allowed outright, yet not on the fast path")
    if bootstrap:
        assert fast is None  # bootstrap admins always take the full path
