"""Inbound bodies are bounded while they stream: an oversized post is refused with 413 before it
is read whole, whether it declares its length or comes chunked (issue 14, item 16; WhatsApp's
webhook, issue 17, the same way: its signature can only be checked once the body is read, so the
bound comes first and a forged signature does not get a huge body read).

The in-process tests check each inbound route's answer; the process test posts 100 MB chunked
bodies to a real ``erm-bot run`` and measures how much its resident set grew (``VmHWM`` after
the peak was reset through ``/proc/<pid>/clear_refs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack, command_form, encode_form, signed_headers
from fakes.telegram import FakeTelegram
from fakes.whatsapp import FakeWhatsApp
from security_rig import (
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_HEADER,
    WHATSAPP_AGENT,
    SlackSide,
    Spy,
    TelegramSide,
    WhatsAppSide,
    rows,
)

from adapters.runtime import open_runtime
from adapters.settings import Settings
from adapters.slack.app import MAX_BODY as SLACK_MAX_BODY
from adapters.telegram.app import MAX_WEBHOOK_BODY
from adapters.whatsapp.app import MAX_WEBHOOK_BODY as WHATSAPP_MAX_BODY
from bot import metrics
from erm.sandbox import ACME, create_app, seed_state, serve
from erm.secret_box import SecretBox

ERM_BOT = Path(sys.executable).parent / "erm-bot"
BIG = 100 * 1024 * 1024  # what the process test posts to each route
CHUNK = 64 * 1024
MAX_GROWTH_MB = 20.0
START_TIMEOUT = 30.0


async def chunks(total: int, size: int = CHUNK) -> AsyncIterator[bytes]:
    """``total`` bytes made lazily, ``size`` at a time (the client never holds the body)."""
    block = b"x" * size
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece


async def post_streamed(
    http: httpx.AsyncClient, url: str, total: int, headers: dict[str, str]
) -> int | None:
    """POST ``total`` bytes chunked; the status, or None when the server closed the connection
    before the client finished sending (which a server refusing early may do)."""
    try:
        response = await http.post(url, content=chunks(total), headers=headers)
    except (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError):
        return None
    return response.status_code


def refused(platform: str) -> float:
    return metrics.value("erm_bot_bodies_refused_total", platform=platform, reason="too_large")


# -- in process: each route's answer ----------------------------------------------------------


async def test_slack_refuses_a_declared_length_over_its_limit_before_reading(
    slack_side: SlackSide, spy: Spy
) -> None:
    engine = slack_side.adapter.dispatcher.core.requests.engine
    before = await rows(engine)
    body = b"x" * (SLACK_MAX_BODY + 1)

    response = await slack_side.post(body, {"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 413
    assert spy.seen == []
    assert await rows(engine) == before


async def test_slack_refuses_a_chunked_body_once_it_passes_the_limit(
    slack_side: SlackSide, spy: Spy
) -> None:
    counted = refused("slack")

    status = await post_streamed(
        slack_side.http, "/slack/events", 4 * SLACK_MAX_BODY, {"Content-Type": "text/plain"}
    )

    assert status in (413, None)
    assert refused("slack") == counted + 1
    assert spy.seen == []


async def test_slack_still_takes_a_signed_command_sent_chunked(slack_side: SlackSide) -> None:
    url = slack_side.fake.response_url()
    body = encode_form(command_form("/erm", "whoami", user_id="U1", response_url=url))
    headers = signed_headers(body)

    async def one_piece() -> AsyncIterator[bytes]:
        yield body.encode()

    response = await slack_side.http.post("/slack/events", content=one_piece(), headers=headers)

    assert response.status_code == 200, response.text


async def test_slack_reads_a_body_just_under_the_limit_and_checks_its_signature(
    slack_side: SlackSide,
) -> None:
    status = await post_streamed(
        slack_side.http, "/slack/events", SLACK_MAX_BODY, {"Content-Type": "text/plain"}
    )

    assert status == 401  # read whole, then refused for its (missing) signature


async def test_telegram_refuses_a_chunked_update_over_its_limit(
    telegram_side: TelegramSide, spy: Spy
) -> None:
    counted = refused("telegram")
    headers = {WEBHOOK_SECRET_HEADER: WEBHOOK_SECRET, "Content-Type": "application/json"}

    status = await post_streamed(
        telegram_side.http, telegram_side.url, 4 * MAX_WEBHOOK_BODY, headers
    )

    assert status in (413, None)
    assert refused("telegram") == counted + 1
    assert spy.seen == []


async def test_telegram_refuses_a_declared_length_over_its_limit(
    telegram_side: TelegramSide, spy: Spy
) -> None:
    response = await telegram_side.post(None, raw=b" " * (MAX_WEBHOOK_BODY + 1))

    assert response.status_code == 413
    assert spy.seen == []


async def test_whatsapp_refuses_a_declared_length_over_its_limit_whatever_its_signature(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy
) -> None:
    counted = refused("whatsapp")
    body = b"{" + b" " * WHATSAPP_MAX_BODY + b"}"
    signatures = {
        "none": None,
        "forged": "sha256=" + "0" * 64,
        "right": whatsapp_side.fake.sign(body),
    }

    statuses = {
        name: (await whatsapp_side.post(body, signature)).status_code
        for name, signature in signatures.items()
    }
    await whatsapp_side.settle()

    assert statuses == dict.fromkeys(signatures, 413)
    assert refused("whatsapp") == counted + len(signatures)
    assert spy.seen == []
    assert await rows(stack.engine) == {"requests": 0, "audit": 0, "codes": 0, "buttons": 0}


async def test_whatsapp_refuses_a_chunked_notification_once_it_passes_the_limit(
    whatsapp_side: WhatsAppSide, spy: Spy
) -> None:
    counted = refused("whatsapp")
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64}

    status = await post_streamed(
        whatsapp_side.http, whatsapp_side.url, 4 * WHATSAPP_MAX_BODY, headers
    )

    assert status in (413, None)
    assert refused("whatsapp") == counted + 1
    assert spy.seen == []


async def test_whatsapp_reads_a_body_just_under_the_limit_and_checks_its_signature(
    whatsapp_side: WhatsAppSide,
) -> None:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64}

    status = await post_streamed(whatsapp_side.http, whatsapp_side.url, WHATSAPP_MAX_BODY, headers)

    assert status == 403  # read whole, then refused for its (wrong) signature


async def test_whatsapp_still_takes_a_signed_notification_sent_chunked(
    whatsapp_side: WhatsAppSide,
) -> None:
    fake = whatsapp_side.fake
    body = fake.body(fake.user_message(WHATSAPP_AGENT, "whoami"))
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": fake.sign(body)}

    async def in_pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    response = await whatsapp_side.http.post(
        whatsapp_side.url, content=in_pieces(), headers=headers
    )
    await whatsapp_side.settle()

    assert response.status_code == 200, response.text
    [reply] = fake.sent(WHATSAPP_AGENT)
    assert f"whatsapp:{WHATSAPP_AGENT}" in reply.text


# -- a real process: memory -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_kb(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            found[name] = int(rest.split()[0])
    return found


def _reset_peak(pid: int) -> None:
    """Make ``VmHWM`` start again from the current resident set (Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextlib.asynccontextmanager
async def erm_bot_process(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """``erm-bot run`` with Slack over HTTP, Telegram and WhatsApp by webhook; yields its URL
    and pid."""
    key = SecretBox.generate_key()
    async with (
        serve(create_app(seed_state())) as erm_url,
        FakeSlack() as slack,
        FakeTelegram() as telegram,
        FakeWhatsApp() as whatsapp,
    ):
        env = {
            "ERM_API_URL": erm_url,
            "ERM_BOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            "ERM_BOT_SECRET_KEYS": key,
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_URL": telegram.api_url,
            "TELEGRAM_WEBHOOK_URL": "https://bot.example.test/telegram/webhook",
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "WHATSAPP_TOKEN": whatsapp.token,
            "WHATSAPP_PHONE_NUMBER_ID": whatsapp.phone_number_id,
            "WHATSAPP_APP_SECRET": whatsapp.app_secret,
            "WHATSAPP_VERIFY_TOKEN": whatsapp.verify_token,
            "WHATSAPP_API_URL": whatsapp.url,
        }
        settings = Settings.model_validate({k.lower(): v for k, v in env.items()})
        async with open_runtime(settings) as runtime:
            await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
        port = _free_port()
        own = ("ERM_", "SLACK_", "TELEGRAM_", "WHATSAPP_")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(own)}
        process = await asyncio.create_subprocess_exec(
            str(ERM_BOT),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=tmp_path,
            env={**inherited, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(url, process)
            yield url, process.pid
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), 30.0)


async def _wait_ready(url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http, asyncio.timeout(START_TIMEOUT):
        while True:
            if process.returncode is not None:
                assert process.stderr is not None
                err = (await process.stderr.read()).decode()
                pytest.fail(f"erm-bot run exited with {process.returncode}: {err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def _refused_in(http: httpx.AsyncClient, url: str, platform: str) -> float:
    text = (await http.get(f"{url}/metrics")).text
    prefix = f'erm_bot_bodies_refused_total{{platform="{platform}",reason="too_large"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


async def test_100_mb_chunked_posts_are_refused_without_the_process_growing(
    tmp_path: Path,
) -> None:
    async with (
        erm_bot_process(tmp_path) as (url, pid),
        httpx.AsyncClient(timeout=60.0) as http,
    ):
        telegram = {WEBHOOK_SECRET_HEADER: WEBHOOK_SECRET, "Content-Type": "application/json"}
        unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
        forged = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64}
        _reset_peak(pid)
        before = _memory_kb(pid)["VmRSS"]

        slack_status = await post_streamed(http, f"{url}/slack/events", BIG, unsigned)
        telegram_status = await post_streamed(http, f"{url}/telegram/webhook", BIG, telegram)
        whatsapp_status = await post_streamed(http, f"{url}/whatsapp/webhook", BIG, forged)

        growth_mb = (_memory_kb(pid)["VmHWM"] - before) / 1024
        assert slack_status in (413, None)
        assert telegram_status in (413, None)
        assert whatsapp_status in (413, None)
        for platform in ("slack", "telegram", "whatsapp"):
            assert await _refused_in(http, url, platform) == 1.0
        assert (await http.get(f"{url}/healthz")).status_code == 200
    print(f"peak RSS growth for three 100 MB chunked posts: {growth_mb:.1f} MB")
    assert growth_mb < MAX_GROWTH_MB
