"""The ERM checks of ``erm-bot doctor`` (all of ``erm-bot doctor --erm``).

ERM answers at ``ERM_API_URL``; then, per distributor, a fresh sign-in with the stored credentials
and the contract check of :mod:`erm.contract`: whether erm-bot's GraphQL documents fit the schema
of this ERM, naming each mismatch by operation, field or argument and types. Nothing is changed in
ERM (no code is generated) nor in the vault (tokens obtained here are not stored).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from adapters.findings import Finding, Status, shown_url
from adapters.settings import Settings
from adapters.web import erm_check
from erm.client import ErmClient
from erm.contract import ContractReport, Outcome, check_contract
from erm.errors import ErmAuthError, ErmError
from erm.service import ErmService
from erm.vault import StoredToken, TokenVault

CHECK_TIMEOUT = 10.0
"""Seconds ERM has to answer the reachability check (sign-ins use the client's own timeouts)."""
CONTRACT_TIMEOUT = 60.0
"""Seconds one distributor's contract check may take: introspection, or up to seven probes."""
CONCURRENCY = 4
"""Distributors checked at once."""

_CONTRACT_FIX = (
    "check that ERM_API_URL names the ERM erm-bot is meant for; if it does, ERM has changed: "
    "send these lines to erm-bot's maintainers (its documents are in erm/operations.py)"
)


class ReadOnlyVault(TokenVault):
    """A vault that keeps what it holds: the doctor changes nothing, not even a stored token."""

    async def save_token(self, name: str, token: StoredToken) -> None:
        return None


async def erm_checks(
    settings: Settings,
    vault: ReadOnlyVault | None,
    names: list[str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Finding]:
    """ERM answers; then, for each distributor in ``names``, its sign-in and its contract check."""
    url = settings.erm_api_url
    reachable = await erm_check(url, CHECK_TIMEOUT, transport=transport)
    if not reachable.ok:
        yield Finding(
            Status.FAIL,
            "erm",
            f"{shown_url(url)}: {reachable.detail}",
            "check ERM_API_URL and that this host can reach it (proxy, firewall, DNS)",
        )
        for name in names:
            yield Finding(Status.SKIP, f"erm sign-in of {name}", "ERM is not reachable")
            yield Finding(Status.SKIP, f"erm contract of {name}", "ERM is not reachable")
        return
    yield Finding(Status.OK, "erm", f"{reachable.detail} in {reachable.seconds * 1e3:.0f} ms")
    if vault is None or not names:
        return
    limit = asyncio.Semaphore(CONCURRENCY)
    async with ErmClient(settings.erm_client_config(), transport=transport) as client:
        service = ErmService(client, vault, settings.erm_service_config())

        async def check(name: str) -> list[Finding]:
            async with limit:
                signed_in = await _sign_in(client, vault, name)
                if signed_in.status is not Status.OK:
                    skipped = Finding(Status.SKIP, f"erm contract of {name}", "no sign-in")
                    return [signed_in, skipped]
                return [signed_in, *await _contract(service, name)]

        per_distributor = await asyncio.gather(*(check(n) for n in names))
    for findings in per_distributor:
        for finding in findings:
            yield finding


async def _sign_in(client: ErmClient, vault: TokenVault, name: str) -> Finding:
    check = f"erm sign-in of {name}"
    try:
        creds = await vault.credentials(name)
        signed = await client.sign_in(creds.sign_in, creds.email, creds.password)
    except ErmAuthError as exc:
        return Finding(
            Status.FAIL,
            check,
            str(exc),
            f"store the current password: `erm-bot distributor add {name} --email EMAIL --replace`",
        )
    except ErmError as exc:
        return Finding(Status.FAIL, check, str(exc), "check ERM_API_URL and ERM's status")
    return Finding(Status.OK, check, f"signed in as {signed.name or creds.email}")


async def _contract(service: ErmService, name: str) -> list[Finding]:
    check = f"erm contract of {name}"
    try:
        async with asyncio.timeout(CONTRACT_TIMEOUT):
            report = await service.run_as(
                name, lambda token, who: check_contract(service.client, token, who)
            )
    except TimeoutError:
        return [
            Finding(
                Status.FAIL,
                check,
                f"no end within {CONTRACT_TIMEOUT:g} s",
                "check ERM's status, then run `erm-bot doctor --erm` again",
            )
        ]
    except ErmError as exc:
        return [Finding(Status.FAIL, check, str(exc), "check ERM_API_URL and ERM's status")]
    return contract_findings(name, report)


def contract_findings(name: str, report: ContractReport) -> list[Finding]:
    """A summary line, then one line per mismatch or failed probe."""
    check = f"erm contract of {name}"
    at = f"ERM at {report.host}"
    if report.unreachable is not None:
        return [
            Finding(
                Status.FAIL,
                check,
                f"{at} did not answer ({report.unreachable})",
                "check ERM_API_URL and ERM's status",
            )
        ]
    total = len(report.results)
    if report.introspection:
        how = "its schema read by introspection"
        summary = f"{at} fits all {total} of erm-bot's documents ({how})"
    else:
        answered = report.count(Outcome.OK)
        unchecked = report.count(Outcome.NOT_CHECKED)
        how = "it refuses introspection, so the read-only operations were run once"
        summary = (
            f"{at} refuses introspection: {answered} read-only operation(s) answered as expected, "
            f"{unchecked} not checked (sign-ins, code mutations and what there was no data for)"
        )
    if report.ok:
        return [Finding(Status.OK, check, summary)]
    failures = report.failures
    findings = [
        Finding(
            Status.FAIL,
            check,
            f"{at}: {len(failures)} of erm-bot's {total} operations do not fit ({how})",
            _CONTRACT_FIX,
        )
    ]
    for result in failures:
        where = f"{check}, {result.operation}"
        if not result.mismatches:
            findings.append(Finding(Status.FAIL, where, f"failed: {result.detail}"))
        for mismatch in result.mismatches:
            findings.append(Finding(Status.FAIL, where, f"{mismatch.where}: {mismatch.message}"))
    return findings
