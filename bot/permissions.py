"""Who may run what, for which distributor.

Roles are granted per (platform, user id) and distributor; an identity linked to others
(:mod:`bot.people`) has, at each distributor, the highest role any identity of its person holds.
Bootstrap admins (``ERM_BOT_ADMINS``) are admins of every configured distributor, as the
identities the setting names (a link does not make another identity one). A user with one
distributor never names it; with several, ``--dist NAME`` or a default set with ``/use NAME``
picks one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from bot.errors import NoAccessError, PermissionDeniedError, UsageError, UserError
from bot.messages import Identity
from bot.people import PeopleStore
from bot.registry import Command
from bot.roles import Role
from bot.storage.grants import GrantStore, KnownUser


class _Denied(Exception):
    """The role is too low; :meth:`Permissions.check` turns it into the user's message."""

    def __init__(self, distributor: str | None, role: Role | None) -> None:
        super().__init__(distributor, role)
        self.distributor = distributor
        self.role = role


class _DefaultUnread(Exception):
    """The choice needs the user's default distributor, which was not read yet."""


def parse_admins(text: str) -> frozenset[str]:
    """``chat:U123,other:456`` -> {"chat:U123", "other:456"}; malformed entries refused."""
    admins = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        platform, sep, user = entry.partition(":")
        if not sep or not platform or not user:
            raise ValueError(
                f"ERM_BOT_ADMINS entries look like platform:user_id, not {entry[:30]!r}"
            )
        admins.add(f"{platform.strip().lower()}:{user.strip()}")
    return frozenset(admins)


@dataclass(frozen=True, slots=True)
class UserIdRule:
    """What a user id looks like on one platform. The adapters know (``adapters.platform_ids``);
    the core checks ids people type against it without naming any platform."""

    pattern: re.Pattern[str]
    form: str  # the refusal's explanation, with an example: "... ids are ..., e.g. x:123"

    def accepts(self, user_id: str) -> bool:
        return self.pattern.fullmatch(user_id) is not None


def check_user_id(rules: Mapping[str, UserIdRule], platform: str, user_id: str) -> None:
    """Raise a ``UsageError`` naming the expected form when ``platform:user_id`` cannot exist.

    No rules (a core built without adapters, in tests of other things): nothing is checked here,
    the store still refuses unknown platforms.
    """
    if not rules:
        return
    shown = f"{platform[:20]}:{user_id[:30]}"
    rule = rules.get(platform)
    if rule is None:
        known = ", ".join(sorted(rules))
        raise UsageError(f"{shown}: unknown platform {platform[:20]!r} (platforms: {known}).")
    if not rule.accepts(user_id):
        raise UsageError(
            f"{shown} is not a possible user id: {rule.form}.\nThey can see theirs with /whoami."
        )


@dataclass(frozen=True, slots=True)
class Access:
    """What a user may do: their role per distributor, and which distributor this command uses."""

    roles: dict[str, Role]
    distributor: str | None
    role: Role | None
    bootstrap_admin: bool = False


class Permissions:
    def __init__(
        self,
        grants: GrantStore,
        distributors: Callable[[], Awaitable[list[str]]],
        bootstrap_admins: Iterable[str] = (),
        user_ids: Mapping[str, UserIdRule] | None = None,
        people: PeopleStore | None = None,
    ) -> None:
        self.grants = grants
        self._people = people
        self._distributors = distributors
        self.bootstrap_admins = frozenset(bootstrap_admins)
        self.user_ids: Mapping[str, UserIdRule] = dict(user_ids or {})

    @property
    def people(self) -> PeopleStore:
        """Who is linked to whom, on the grants' database (made on first use)."""
        if self._people is None:
            self._people = PeopleStore(self.grants.engine)
        return self._people

    def check_user_id(self, platform: str, user_id: str) -> None:
        """A ``UsageError`` when ``platform:user_id`` cannot exist (see :func:`check_user_id`)."""
        check_user_id(self.user_ids, platform, user_id)

    async def roles(self, identity: Identity, known: KnownUser | None = None) -> dict[str, Role]:
        """The identity's role per distributor (its person's, see the module docstring)."""
        if known is not None:
            roles = known.roles
        else:
            roles = await self.people.roles_of(identity)
        if identity.key in self.bootstrap_admins:
            everywhere = [*await self._distributors(), *roles]
            roles = dict.fromkeys(everywhere, Role.ADMIN)
        return roles

    async def check(
        self,
        identity: Identity,
        command: Command,
        wanted: str | None,
        known: KnownUser | None = None,
    ) -> Access:
        """The access this command runs with, or a ``UserError`` saying what is missing.

        ``known``: the user's grants when the caller has read them already
        (:meth:`PeopleStore.known_in`, in the dispatcher's first transaction).
        """
        roles = await self.roles(identity, known)
        bootstrap = identity.key in self.bootstrap_admins
        default = known.default_distributor if known is not None else None
        default_read = known is not None and known.default_read
        while True:
            try:
                return self._decide(
                    identity, command, wanted, roles, bootstrap, default, default_read
                )
            except _DefaultUnread:
                default = await self.grants.default_distributor(identity.platform, identity.user_id)
                default_read = True
            except _Denied as denied:
                raise await self._denied(
                    identity, command, denied.distributor, denied.role
                ) from None

    def allowed(
        self, identity: Identity, command: Command, wanted: str | None, known: KnownUser
    ) -> Access | None:
        """The access when ``known`` allows the command outright, without awaiting anything (so the
        dispatcher can count the rate limits in the transaction that read the grants); None when
        :meth:`check` must decide: a bootstrap admin, a refusal, a default not read."""
        if identity.key in self.bootstrap_admins:
            return None
        try:
            return self._decide(
                identity,
                command,
                wanted,
                known.roles,
                False,
                known.default_distributor,
                known.default_read,
            )
        except (UserError, _DefaultUnread, _Denied):
            return None

    def _decide(
        self,
        identity: Identity,
        command: Command,
        wanted: str | None,
        roles: dict[str, Role],
        bootstrap: bool,
        default: str | None,
        default_read: bool,
    ) -> Access:
        """The rules, on what is known; raises a ``UserError``, or :class:`_Denied` (the message
        names who can grant: :meth:`check` looks them up), or :class:`_DefaultUnread`."""
        if command.anyone:
            return Access(roles, None, max(roles.values(), default=None), bootstrap)
        if not roles and not bootstrap:
            raise NoAccessError(
                "You don't have access to erm-bot yet. Ask your distributor's erm-bot admin to "
                f"run: /grant {identity.key} agent"
            )
        if not command.per_distributor:
            top = max(roles.values(), default=Role.ADMIN if bootstrap else None)
            if top is None or top < command.role:
                raise _Denied(None, top)
            return Access(roles, None, top, bootstrap)
        distributor = self._choose(command, roles, wanted, default, default_read)
        role = roles[distributor]
        if role < command.role:
            raise _Denied(distributor, role)
        return Access(roles, distributor, role, bootstrap)

    @staticmethod
    def _choose(
        command: Command,
        roles: dict[str, Role],
        wanted: str | None,
        default: str | None,
        default_read: bool,
    ) -> str:
        if wanted:
            if wanted not in roles:
                mine = ", ".join(sorted(roles)) or "none"
                raise PermissionDeniedError(
                    f"You have no role at distributor {wanted!r} (yours: {mine}).",
                    missing_role=command.role.label,
                    distributor=wanted,
                )
            return wanted
        if len(roles) == 1:
            return next(iter(roles))
        if not default_read:
            raise _DefaultUnread
        if default in roles:
            assert default is not None
            return default
        names = ", ".join(sorted(roles))
        raise UsageError(
            f"You work for several distributors ({names}): add --dist NAME, "
            "or set a default with /use NAME.",
            command.usage,
            command.example,
        )

    async def _denied(
        self, identity: Identity, command: Command, distributor: str | None, role: Role | None
    ) -> PermissionDeniedError:
        where = f" at {distributor}" if distributor else ""
        yours = f"you are {role.label}{where}" if role else "you have no role"
        granters = await self.granters(distributor)
        ask = f"Ask {granters} to grant it." if granters else "Ask an erm-bot admin to grant it."
        return PermissionDeniedError(
            f"/{command.name} needs the {command.role.label} role{where}; {yours}. {ask}",
            missing_role=command.role.label,
            distributor=distributor,
        )

    async def granters(self, distributor: str | None) -> str:
        """Who can grant roles for ``distributor`` (its admins), as a short readable list."""
        names: list[str] = []
        if distributor:
            for grant in await self.grants.holders(distributor, Role.ADMIN):
                names.append(f"{grant.platform}:{grant.user_id}")
        names.extend(sorted(self.bootstrap_admins))
        unique = list(dict.fromkeys(names))
        return ", ".join(unique[:3]) + (" or another admin" if len(unique) > 3 else "")
