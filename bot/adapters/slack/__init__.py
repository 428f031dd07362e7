"""Slack: the adapter over the Web API, the Bolt app, settings, the text between Slack's
markup and the port's, ``proofroom slack`` (``cli``) and the app manifest
(``manifest.yaml``)."""

from bot.adapters.slack.adapter import SlackAdapter, SlackChannelRefused, make_client
from bot.adapters.slack.app import build_app
from bot.adapters.slack.settings import SlackSettings

__all__ = ["SlackAdapter", "SlackChannelRefused", "SlackSettings", "build_app", "make_client"]
