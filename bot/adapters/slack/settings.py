"""Slack settings (pydantic-settings).

Tokens keep Slack's own variable names (``SLACK_BOT_TOKEN``, ``SLACK_APP_TOKEN``,
``SLACK_SIGNING_SECRET``) because every Slack tutorial and tool uses them; the knobs of
this adapter take the ``PROOFROOM_SLACK_`` prefix. Secrets are ``SecretStr`` so that a
settings object printed or logged by mistake shows ``**********``.
"""

from __future__ import annotations

from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class SlackSettings(BaseSettings):
    """Credentials and limits of the Slack adapter; see ``docs/slack.md``."""

    model_config = SettingsConfigDict(
        env_prefix="PROOFROOM_SLACK_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,  # an error never quotes a token it was given
    )

    bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "bot_token")
    )
    # Socket Mode only (``xapp-``, scope connections:write).
    app_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "app_token")
    )
    # HTTP mode only: verifies that a request comes from Slack.
    signing_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "signing_secret")
    )
    # Web API base; tests point it at a local fake. Files are downloaded with the bot
    # token only from this host or from files.slack.com.
    api_url: str = "https://slack.com/api/"
    # Largest file taken from a message (init image, CSV). Checked on the declared size
    # before downloading and again while downloading.
    max_intake_bytes: int = 20 * MIB
    # How long an Events API ``event_id`` is remembered; Slack retries within minutes.
    dedupe_ttl_s: int = 3600
    # Retries of a rate-limited (429) Web API call; each waits Retry-After seconds.
    rate_limit_retries: int = 3
    # Least time between two chat.update calls (Tier 3: about 50 a minute per workspace).
    # Edits wait rather than being dropped; the core skips progress that a later event
    # already replaced, so waiting costs no accuracy.
    update_interval_s: float = 1.0
    # How long an upload waits for Slack to report the message that carries the file.
    share_wait_s: float = 5.0
    # Seconds a Web API call may take before it is given up and tried again.
    api_timeout_s: float = 30.0
    http_port: int = 3000
    http_path: str = "/slack/events"

    def download_hosts(self) -> frozenset[str]:
        """Hosts that may receive the bot token when a file is downloaded."""
        return frozenset({"files.slack.com", urlparse(self.api_url).hostname or "slack.com"})

    def secret(self, name: str) -> str:
        """The plain value of ``bot_token``/``app_token``/``signing_secret``; a sentence
        naming the variable when it is missing."""
        value: SecretStr | None = getattr(self, name)
        if value is None or not value.get_secret_value():
            variable = {
                "bot_token": "SLACK_BOT_TOKEN (xoxb-...)",
                "app_token": "SLACK_APP_TOKEN (xapp-..., Socket Mode)",
                "signing_secret": "SLACK_SIGNING_SECRET (HTTP mode)",
            }[name]
            raise ValueError(f"{variable} is not set; see docs/slack.md")
        return value.get_secret_value()
