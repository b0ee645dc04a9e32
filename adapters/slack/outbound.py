"""Everything the bot sends to Slack goes through ``Outbound``.

- A ``response_url`` is used first: at most 5 posts within 30 minutes of the command or click
  that issued it (Slack's limit; a margin is kept). When it is used up, expired or refused, the
  message goes through the Web API instead: ``chat.postMessage`` (public), ``chat.postEphemeral``
  (private) or ``chat.update`` (replacing a non-ephemeral message).
- HTTP 429: wait ``Retry-After`` seconds and send exactly once more.
- ``chat.postMessage`` is paced per channel (about one message a second, Slack's documented rate);
  a burst is spread out, never dropped.
- ``ok: false`` answers are logged with their error code and raised as ``SlackSendError``; they are
  not retried. No log line carries a token or a ``response_url`` (which is a bearer capability).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics

log = logging.getLogger(__name__)

RESPONSE_URL_USES = 5
RESPONSE_URL_SECONDS = 30 * 60 - 60  # Slack allows 30 minutes; keep a minute for clock and transit
MAX_RETRY_AFTER = 60.0  # a longer wait is not worth holding a reply for: give up and log
CHANNEL_INTERVAL = 1.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class SlackSendError(Exception):
    """Slack refused a call (``ok: false``, an HTTP error, or no answer); ``error`` is its code."""

    def __init__(self, method: str, error: str, status: int | None = None) -> None:
        super().__init__(f"Slack {method} failed: {error}")
        self.method = method
        self.error = error
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """Where an answer goes: the channel and user, and the ways Slack gave us to reach them."""

    channel: str
    user: str
    response_url: str | None = None
    message_ts: str | None = None  # the message that holds a clicked button
    ephemeral: bool = False  # that message is ephemeral: only its response_url can replace it


class ResponseUrls:
    """Uses left per ``response_url``: at most 5, within 30 minutes of the first sight of it.

    Kept in memory for two hours (one small entry per command or click), so an answer that comes
    late still sees its URL as expired. Per process: with several replicas a URL is at worst
    refused by Slack, and the Web API fallback takes over.
    """

    def __init__(
        self,
        clock: Clock = time.monotonic,
        uses: int = RESPONSE_URL_USES,
        seconds: float = RESPONSE_URL_SECONDS,
    ) -> None:
        self._clock = clock
        self._uses = uses
        self._seconds = seconds
        self._seen: dict[str, tuple[float, int]] = {}  # url -> (first seen, uses so far)
        self._pruned_at = clock()

    def open(self, url: str) -> None:
        """Start the 30 minutes of ``url`` (call when the command or click arrives)."""
        now = self._clock()
        if now - self._pruned_at > 60:
            self._pruned_at = now
            keep = 4 * self._seconds
            self._seen = {u: v for u, v in self._seen.items() if now - v[0] <= keep}
        self._seen.setdefault(url, (now, 0))

    def take(self, url: str) -> bool:
        """Use ``url`` once if it has uses and time left; False means: use the Web API."""
        self.open(url)
        first, used = self._seen[url]
        if used >= self._uses or self._clock() - first > self._seconds:
            return False
        self._seen[url] = (first, used + 1)
        return True


class ChannelPacer:
    """At most one message per ``interval`` seconds to each channel, in order of arrival."""

    def __init__(
        self,
        interval: float = CHANNEL_INTERVAL,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, channel: str) -> None:
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            now = self._clock()
            due = self._next.get(channel, now)
            if due > now:
                await self._sleep(due - now)
            self._next[channel] = max(now, due) + self._interval
            self._prune(now)

    def _prune(self, now: float) -> None:
        if len(self._next) > 1000:
            for channel in [c for c, due in self._next.items() if due < now]:
                self._next.pop(channel, None)
                lock = self._locks.get(channel)
                if lock is not None and not lock.locked():
                    del self._locks[channel]


def _retry_after(headers: Mapping[str, Any] | None) -> float:
    """Seconds from a ``Retry-After`` header (1 when absent or unreadable)."""
    if not headers:
        return 1.0
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            with contextlib.suppress(TypeError, ValueError):
                return max(0.0, float(raw))
    return 1.0


class Outbound:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        urls: ResponseUrls | None = None,
        pacer: ChannelPacer | None = None,
        max_retry_after: float = MAX_RETRY_AFTER,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self._session: aiohttp.ClientSession | None = None
        self.urls = urls or ResponseUrls()
        self.pacer = pacer or ChannelPacer()
        self._max_retry_after = max_retry_after
        self._sleep = sleep

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One Web API call: paced, 429 honoured once, ``ok: false`` logged and raised."""
        channel = str(params.get("channel") or "")
        for attempt in (1, 2):
            if method == "chat.postMessage" and channel:
                await self.pacer.wait(channel)
            try:
                response = await self.client.api_call(method, json=params)
            except SlackApiError as exc:
                status = exc.response.status_code
                data = exc.response.data if isinstance(exc.response.data, dict) else {}
                error = str(data.get("error") or f"http_{status}")
                if status == 429 and attempt == 1:
                    wait = _retry_after(exc.response.headers)
                    if wait <= self._max_retry_after:
                        log.info(
                            "Slack %s rate limited; retrying once in %.1f s",
                            method,
                            wait,
                            extra={"slack_method": method, "channel": channel},
                        )
                        await self._sleep(wait)
                        continue
                log.warning(
                    "Slack %s failed: %s",
                    method,
                    error,
                    extra={"slack_method": method, "slack_error": error, "channel": channel},
                )
                metrics.count_send_failure("slack", method, error)
                raise SlackSendError(method, error, status) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning(
                    "Slack %s failed: no answer (%s)",
                    method,
                    type(exc).__name__,
                    extra={"slack_method": method, "slack_error": "network", "channel": channel},
                )
                metrics.count_send_failure("slack", method, "network")
                raise SlackSendError(method, "network") from exc
            answer = response.data
            return answer if isinstance(answer, dict) else {}
        raise AssertionError("unreachable")  # pragma: no cover

    async def post_message(self, channel: str, message: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call("chat.postMessage", channel=channel, **message)

    async def post_ephemeral(
        self, channel: str, user: str, message: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self.call("chat.postEphemeral", channel=channel, user=user, **message)

    async def update(self, channel: str, ts: str, message: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call("chat.update", channel=channel, ts=ts, **message)

    async def respond(self, url: str, body: Mapping[str, Any]) -> bool:
        """POST to a response_url; True when Slack took it (429 honoured once).

        Plain aiohttp, which logs nothing: a response_url lets anyone post as the bot into that
        conversation for 30 minutes, so it must not reach the logs (httpx logs URLs at INFO).
        """
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for attempt in (1, 2):
            try:
                async with self._session.post(url, json=dict(body)) as response:
                    status = response.status
                    text = (await response.text()).strip()[:100]
                    headers = dict(response.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning(
                    "Slack response_url post failed: no answer (%s)",
                    type(exc).__name__,
                    extra={"slack_method": "response_url", "slack_error": "network"},
                )
                metrics.count_send_failure("slack", "response_url", "network")
                return False
            if status == 429 and attempt == 1:
                wait = _retry_after(headers)
                if wait <= self._max_retry_after:
                    log.info("Slack response_url rate limited; retrying once in %.1f s", wait)
                    await self._sleep(wait)
                    continue
            if status == 200:
                return True
            error = text or f"http_{status}"
            log.warning(
                "Slack response_url post failed: %s",
                error,
                extra={"slack_method": "response_url", "slack_error": error},
            )
            metrics.count_send_failure("slack", "response_url", f"http_{status}")
            return False
        return False  # pragma: no cover - the loop always returns

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(
        self, target: Target, message: Mapping[str, Any], *, public: bool, replace: bool = False
    ) -> str | None:
        """Send one answer the best way still open; returns how (``None``: it could not be sent).

        ``public``: the whole channel sees it (else only ``target.user``). ``replace``: it
        replaces the message that holds the clicked button.
        """
        url = target.response_url
        if url and self.urls.take(url):
            body = dict(message)
            body["replace_original"] = replace
            if not replace:
                body["response_type"] = "in_channel" if public else "ephemeral"
            if await self.respond(url, body):
                return "response_url"
        try:
            if replace and target.message_ts and not target.ephemeral:
                await self.update(target.channel, target.message_ts, message)
                return "chat.update"
            if public:
                await self.post_message(target.channel, message)
                return "chat.postMessage"
            await self.post_ephemeral(target.channel, target.user, message)
            return "chat.postEphemeral"
        except SlackSendError:
            return None  # logged in call()
