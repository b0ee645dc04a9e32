"""Every command, declared once; adapters serve ``COMMANDS`` as they are."""

from __future__ import annotations

from bot.commands import admin, approvals, codes, guide, help, lookups, onboarding, people
from bot.registry import Command

COMMANDS: tuple[Command, ...] = (
    guide.code_menu,
    codes.code_days,
    codes.code_free,
    codes.code_reset,
    codes.resend,
    lookups.history,
    lookups.fleet,
    lookups.items,
    lookups.account,
    help.help_,
    help.whoami,
    admin.use,
    admin.grant,
    admin.revoke,
    admin.users,
    admin.audit,
    onboarding.invite,
    onboarding.start,
    people.link,
    people.unlink,
    approvals.approvals,
    approvals.here,
    approvals.policy,
    approvals.approve,
    approvals.deny,
    approvals.cancel,
)
