"""Slack: slash commands, Block Kit replies and buttons over HTTP or Socket Mode (bolt AsyncApp)."""

from adapters.slack.app import SlackAdapter, SlackConfig, SlackConfigError, SlackStartError
from adapters.slack.outbound import SlackSendError

__all__ = ["SlackAdapter", "SlackConfig", "SlackConfigError", "SlackSendError", "SlackStartError"]
