"""Discord settings (pydantic-settings).

The token keeps Discord's usual variable name (``DISCORD_TOKEN``) and the application id
``DISCORD_APPLICATION_ID``; the knobs of this adapter take the ``PROOFROOM_DISCORD_``
prefix. The token is a ``SecretStr`` so that a settings object printed or logged by
mistake shows ``**********``. Lists (guild ids, approver roles) are comma-separated.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1024 * 1024

# Discord accepts only these auto-archive durations (minutes) for a new thread.
ArchiveMinutes = Literal[60, 1440, 4320, 10080]


class DiscordSettings(BaseSettings):
    """Credentials and limits of the Discord adapter; see ``docs/discord.md``."""

    model_config = SettingsConfigDict(
        env_prefix="PROOFROOM_DISCORD_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,  # DiscordSettings(token=...) in code
        env_ignore_empty=True,  # `DISCORD_APPLICATION_ID=` in a .env means unset
        hide_input_in_errors=True,  # an error never quotes a token it was given
    )

    token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "PROOFROOM_DISCORD_TOKEN")
    )
    # Discord's REST API, where `proofroom doctor` checks the token (a local fake in tests).
    api_url: str = "https://discord.com/api/v10"
    # The application's id ("client id"): needed for the invite URL. The running bot
    # learns it at login, so it is optional there.
    application_id: int | None = Field(
        default=None,
        validation_alias=AliasChoices("DISCORD_APPLICATION_ID", "PROOFROOM_DISCORD_APPLICATION_ID"),
    )
    # Guilds whose command list is replaced at start: guild commands appear at once,
    # global ones can take up to an hour, so guilds are the default for a team tool.
    guild_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    sync_global: bool = False
    # Roles whose members may approve or reject, by name or id; empty: the core decides.
    approver_roles: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Incoming attachments (init image, mask, control): refused above these limits,
    # the size before downloading, the pixels before decoding.
    max_attachment_bytes: int = 20 * MIB
    # Outgoing images: the guild's limit when no interaction told us (10 MiB without boost).
    upload_limit_bytes: int = 10 * MIB
    # Put ✅ ❌ 🔁 under each image so a vote is one click (needs Add Reactions and
    # Read Message History; the invite URL drops both when this is off).
    seed_reactions: bool = True
    thread_archive_minutes: ArchiveMinutes = 1440
    # How long a chat call from the service waits for the Discord event loop.
    call_timeout_s: float = 60.0
    # How long one pump of job events blocks on Redis before the loop checks for shutdown.
    pump_block_ms: int = 1000

    @field_validator("guild_ids", "approver_roles", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        # "123, 456" from the environment; lists from code pass through.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    def secret_token(self) -> str:
        """The plain token, or a sentence naming the variable when it is missing."""
        if self.token is None or not self.token.get_secret_value():
            raise ValueError(
                "DISCORD_TOKEN is not set; create a bot in the Discord developer portal "
                "(see docs/discord.md)"
            )
        return self.token.get_secret_value()
