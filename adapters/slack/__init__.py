"""Slack: slash commands, Block Kit replies and buttons over HTTP or Socket Mode (bolt AsyncApp).

Importing the package stays cheap (bolt loads when the adapter is built): see
:mod:`adapters.platform`. The adapter itself is :class:`adapters.slack.app.SlackAdapter`.
"""

from adapters.slack.platform import PLATFORM

__all__ = ["PLATFORM"]
