"""``erm-bot doctor`` for Slack: the bot token (``auth.test``) and, in Socket Mode, the app-level
token (``apps.connections.open``, which only hands out a connection URL)."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.findings import CHECK_TIMEOUT, Status, shown_url
from adapters.platform import Report
from adapters.slack.config import SlackConfig


async def check(config: SlackConfig, report: Report) -> None:
    base = config.api_url if config.api_url.endswith("/") else config.api_url + "/"
    client = AsyncWebClient(token=config.bot_token, base_url=base, timeout=int(CHECK_TIMEOUT))
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = _slack_error(exc)
        report(
            Status.FAIL,
            "slack auth.test",
            f"Slack refused SLACK_BOT_TOKEN ({error})",
            "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions "
            "page; reinstall the app to the workspace if it was revoked",
        )
        return
    except Exception as exc:
        report(
            Status.FAIL,
            "slack auth.test",
            f"no answer from {shown_url(base)} ({type(exc).__name__})",
            "check SLACK_API_URL and that this host can reach Slack",
        )
        return
    report(
        Status.OK,
        "slack auth.test",
        f"bot {auth.get('user') or auth.get('user_id')} in team "
        f"{auth.get('team') or auth.get('team_id')}",
    )
    if config.app_token is None:
        return
    socket = AsyncWebClient(token=config.app_token, base_url=base, timeout=int(CHECK_TIMEOUT))
    try:
        await socket.apps_connections_open(app_token=config.app_token)
    except SlackApiError as exc:
        report(
            Status.FAIL,
            "slack socket mode",
            f"Slack refused SLACK_APP_TOKEN ({_slack_error(exc)})",
            "make an app-level token with the connections:write scope (Basic Information) "
            "and enable Socket Mode",
        )
        return
    except Exception as exc:
        report(
            Status.FAIL,
            "slack socket mode",
            f"no answer ({type(exc).__name__})",
            "check that this host can reach Slack",
        )
        return
    report(Status.OK, "slack socket mode", "SLACK_APP_TOKEN may open connections")


def _slack_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    data = getattr(response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {getattr(response, 'status_code', '?')}"
