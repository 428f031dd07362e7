"""The Slack tests' fixtures (the fake Web API, the bot served over HTTP)."""

from tests.bot.adapters.slack.conftest import fake_slack, make_slack, slack_settings  # noqa: F401
