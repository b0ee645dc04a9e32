"""Outbound: response_url budget, Web API fallbacks, 429 once, per-channel pacing, ok:false logs."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest
from fakes.slack import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, FakeSlack
from slack_rig import SlackRig

from adapters.slack.app import SlackAdapter, SlackStartError
from adapters.slack.config import SlackConfig
from adapters.slack.outbound import ResponseUrls, SlackSendError, Target
from adapters.slack.render import render
from bot.messages import Reply, Visibility
from erm.sandbox import OPEN_ACP1_OEM_ID

MESSAGE = render(Reply(title="Hello", lines=("one", "two")))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_auth_test_runs_once_at_start_against_the_fake(slack: SlackRig) -> None:
    await slack.ask("/items", "", user_id="U2")
    await slack.ask("/fleet", "", user_id="U2")
    (auth,) = slack.fake.calls_to("auth.test")
    assert auth.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert all(c.path.startswith(("/api/", "/response/")) for c in slack.fake.calls)


async def test_a_refused_bot_token_stops_start_without_showing_it(
    stack: Any, fake_slack: FakeSlack
) -> None:
    config = SlackConfig(
        bot_token="xoxb-wrong-token-42", signing_secret=SIGNING_SECRET, api_url=fake_slack.api_url
    )
    adapter = SlackAdapter(stack.dispatcher, config)
    with pytest.raises(SlackStartError, match="invalid_auth") as raised:
        await adapter.start()
    assert "xoxb-wrong-token-42" not in str(raised.value)
    await adapter.stop()


async def test_429_is_retried_exactly_once_after_retry_after(slack: SlackRig) -> None:
    slack.fake.fail("chat.postMessage", status=429, retry_after=1)
    answer = await slack.adapter.outbound.post_message("C1", MESSAGE)
    assert answer["ok"] is True
    first, second = slack.fake.calls_to("chat.postMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95


async def test_a_second_429_is_not_retried_again(
    slack: SlackRig, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fake.fail("chat.postMessage", status=429, retry_after=0.1, times=2)
    with pytest.raises(SlackSendError) as raised:
        await slack.adapter.outbound.post_message("C1", MESSAGE)
    assert raised.value.error == "ratelimited"
    assert len(slack.fake.calls_to("chat.postMessage")) == 2
    assert any("ratelimited" in r.getMessage() for r in caplog.records)


async def test_429_on_a_response_url_is_retried_once(slack: SlackRig) -> None:
    slack.fake.fail("response", status=429, retry_after=0.2)
    url = slack.fake.response_url()
    how = await slack.adapter.outbound.deliver(Target("C1", "U1", url), MESSAGE, public=False)
    assert how == "response_url"
    assert [c.status for c in slack.fake.calls_to("response")] == [429, 200]


async def test_posts_to_one_channel_are_paced_about_one_a_second(slack: SlackRig) -> None:
    outbound = slack.adapter.outbound
    results = await asyncio.gather(*(outbound.post_message("C1", MESSAGE) for _ in range(5)))
    assert all(r["ok"] for r in results)
    times = [c.at for c in slack.fake.calls_to("chat.postMessage")]
    assert len(times) == 5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert times[-1] - times[0] < 8.0  # spread out, not stuck


async def test_other_channels_are_not_held_up(slack: SlackRig) -> None:
    outbound = slack.adapter.outbound
    await outbound.post_message("C1", MESSAGE)
    started = asyncio.get_running_loop().time()
    await asyncio.gather(outbound.post_message("C2", MESSAGE), outbound.post_message("C3", MESSAGE))
    assert asyncio.get_running_loop().time() - started < 0.9


async def test_ok_false_is_logged_with_its_code_and_not_retried(
    slack: SlackRig, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fake.error("chat.postMessage", "channel_not_found")
    with (
        caplog.at_level(logging.WARNING, logger="adapters.slack"),
        pytest.raises(SlackSendError) as raised,
    ):
        await slack.adapter.outbound.post_message("C404", MESSAGE)
    assert raised.value.error == "channel_not_found"
    assert len(slack.fake.calls_to("chat.postMessage")) == 1
    (record,) = [r for r in caplog.records if r.name.startswith("adapters.slack")]
    assert "channel_not_found" in record.getMessage()
    assert record.__dict__["slack_error"] == "channel_not_found"
    assert record.__dict__["slack_method"] == "chat.postMessage"


async def test_deliver_surfaces_a_failed_fallback_as_none(slack: SlackRig) -> None:
    slack.fake.error("chat.postEphemeral", "not_in_channel")
    how = await slack.adapter.outbound.deliver(Target("C1", "U1"), MESSAGE, public=False)
    assert how is None


async def test_a_response_url_is_used_at_most_five_times(slack: SlackRig) -> None:
    url = slack.fake.response_url()
    target = Target("C1", "U1", url)
    ways = [await slack.adapter.outbound.deliver(target, MESSAGE, public=False) for _ in range(6)]
    assert ways == ["response_url"] * 5 + ["chat.postEphemeral"]
    assert len(slack.fake.calls_to("response")) == 5
    public = await slack.adapter.outbound.deliver(target, MESSAGE, public=True)
    assert public == "chat.postMessage"
    (posted,) = slack.fake.calls_to("chat.postMessage")
    assert posted.body["channel"] == "C1"


async def test_a_response_url_is_not_used_after_thirty_minutes(slack: SlackRig) -> None:
    clock = Clock()
    slack.adapter.outbound.urls = ResponseUrls(clock=clock)
    url = slack.fake.response_url()
    slack.adapter.outbound.urls.open(url)  # the command arrives
    clock.now += 29 * 60 + 30
    how = await slack.adapter.outbound.deliver(Target("C1", "U1", url), MESSAGE, public=False)
    assert how == "chat.postEphemeral"
    assert slack.fake.calls_to("response") == []


async def test_a_command_answered_after_thirty_minutes_falls_back(slack: SlackRig) -> None:
    """The 30 minutes start when the command arrives, not when the answer is ready."""
    clock = Clock()
    slack.adapter.outbound.urls = ResponseUrls(clock=clock)
    gate = asyncio.Event()
    handle = slack.adapter.dispatcher.handle

    async def slow(request: Any) -> Any:
        await gate.wait()
        return await handle(request)

    slack.adapter.dispatcher.handle = slow  # type: ignore[method-assign]
    sent = await slack.command("/items", "", user_id="U2", channel_id="C1")
    assert sent.response.status_code == 200
    clock.now += 31 * 60
    gate.set()
    (fallback,) = await slack.fake.wait_for("chat.postEphemeral")
    assert fallback.body["user"] == "U2"
    assert slack.fake.calls_to("response") == []


async def test_a_refused_response_url_falls_back_to_the_web_api(slack: SlackRig) -> None:
    slack.fake.fail("response", status=404, error="expired_url", retry_after=None)
    url = slack.fake.response_url()
    how = await slack.adapter.send(
        Target("C1", "U1", url), Reply(title="Hi all", visibility=Visibility.PUBLIC)
    )
    assert how == "chat.postMessage"


async def test_no_log_record_carries_a_token_or_secret(
    slack: SlackRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await slack.ask("/code", f"days {OPEN_ACP1_OEM_ID} 30")
    await slack.ask("/erm", "whoami", user_id="U9")
    slack.fake.fail("chat.postMessage", status=429, retry_after=0.1)
    await slack.adapter.outbound.post_message("C1", MESSAGE)
    slack.fake.error("chat.postMessage", "invalid_auth")
    with pytest.raises(SlackSendError):
        await slack.adapter.outbound.post_message("C1", MESSAGE)
    records = caplog.records
    assert records
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN):
            assert secret not in text, (record.name, record.getMessage()[:200])
        if record.levelno >= logging.INFO:  # response_urls are capabilities too
            assert "/response/" not in text, (record.name, record.getMessage()[:200])


async def test_start_survives_a_rate_limited_auth_test(stack: Any, fake_slack: FakeSlack) -> None:
    """Only a refused token stops the start; otherwise auth.test is tried again on a request."""
    fake_slack.fail("auth.test", status=429, retry_after=30)
    config = SlackConfig(
        bot_token=fake_slack.bot_token, signing_secret=SIGNING_SECRET, api_url=fake_slack.api_url
    )
    adapter = SlackAdapter(stack.dispatcher, config)
    await adapter.start()
    try:
        assert [c.status for c in fake_slack.calls_to("auth.test")] == [429]
        result = await adapter._authorize_function()()
        assert result.bot_user_id == "U0BOT"
        assert [c.status for c in fake_slack.calls_to("auth.test")] == [429, 200]
    finally:
        await adapter.stop()
