"""What the Slack adapter needs to know, read once from ``Settings``."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.settings import Settings
from adapters.slack.workspace import Workspaces

NAME = "slack"
DEFAULT_API_URL = "https://slack.com/api/"


class SlackConfigError(ValueError):
    """The Slack settings cannot work (the message names the variable to set)."""


@dataclass(frozen=True, slots=True)
class SlackConfig:
    bot_token: str = field(repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)  # set: Socket Mode
    api_url: str = DEFAULT_API_URL
    # Workspaces served (SLACK_TEAM_IDS); empty: the bot token's own, from auth.test.
    workspaces: Workspaces = field(default_factory=Workspaces)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackConfig:
        def secret(name: str) -> str | None:
            value = getattr(settings, name)
            text: str = value.get_secret_value().strip() if value is not None else ""
            return text or None

        bot_token = secret("slack_bot_token")
        if bot_token is None:
            raise SlackConfigError("SLACK_BOT_TOKEN is not set")
        try:
            workspaces = Workspaces.parse(settings.slack_team_ids)
        except ValueError as exc:
            raise SlackConfigError(str(exc)) from None
        return cls(
            bot_token=bot_token,
            signing_secret=secret("slack_signing_secret"),
            app_token=secret("slack_app_token"),
            api_url=settings.slack_api_url,
            workspaces=workspaces,
        )

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    def check(self) -> None:
        """Raise ``SlackConfigError`` naming the variable when these settings cannot work."""
        if not self.bot_token:
            raise SlackConfigError("SLACK_BOT_TOKEN is not set")
        if not self.bot_token.startswith("xox"):
            raise SlackConfigError("SLACK_BOT_TOKEN must be a bot token (xoxb-...)")
        if self.app_token is not None and not self.app_token.startswith("xapp-"):
            raise SlackConfigError("SLACK_APP_TOKEN must be an app-level token (xapp-...)")
        if not self.socket_mode and not self.signing_secret:
            raise SlackConfigError(
                "SLACK_SIGNING_SECRET is required in HTTP mode (requests to /slack/events); "
                "set it, or set SLACK_APP_TOKEN to use Socket Mode"
            )
        if not self.api_url.startswith(("http://", "https://")):
            raise SlackConfigError("SLACK_API_URL must start with http:// or https://")
