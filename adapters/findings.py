"""What one ``erm-bot doctor`` check found, and its line: ``STATUS check: detail -> fix``."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import httpx

from adapters.logs import REDACTOR

CHECK_TIMEOUT = 10.0
"""Seconds one check may take (ERM has its own, in :mod:`adapters.doctor_erm`)."""


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    status: Status
    check: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value:<5} {self.check}: {self.detail}"
        if self.fix and self.status in (Status.FAIL, Status.WARN):
            text += f" -> {self.fix}"
        return REDACTOR.redact(text)


def shown_url(url: str) -> str:
    """Scheme, host and path of a URL: never its user, password or query."""
    try:
        parts = httpx.URL(url)
    except Exception:
        return "an unreadable URL"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host}{port}{parts.path}"
