"""Roles per distributor; each includes the ones below it."""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    VIEWER = 1  # history, fleets, items, accounts
    AGENT = 2  # + days codes
    SUPERVISOR = 3  # + free and reset codes, approving
    ADMIN = 4  # + grants, audit, distributor settings

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {text[:20]!r} (roles: {names})") from None
