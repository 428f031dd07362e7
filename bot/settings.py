"""Settings of the chat side (pydantic-settings, ``PROOFROOM_`` env prefix): review policy,
export folder, defaults for ``/imagine``, and the job-event consumer group.

Lists are comma-separated in the environment (``PROOFROOM_APPROVER_IDS=U024BE7LH,U0G9QF9C6``)
because that is how people write them in a ``.env`` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.quotas.policy import Quotas
from engine.redaction import redacted_repr_args
from engine.settings import Settings

Names = Annotated[frozenset[str], NoDecode]


class ReviewPolicy(BaseModel):
    """Who may decide on an image, and what a decision takes."""

    # Both empty: everyone in the channel may approve and reject.
    approver_ids: Names = frozenset()
    approver_roles: Names = frozenset()
    approvals_needed: int = Field(default=1, ge=1)
    requester_may_approve: bool = True
    auto_rerender_rejected: bool = False
    # Re-renders per original image, 🔁 and automatic together; bounds the GPU time one
    # image can take.
    max_rerenders: int = Field(default=2, ge=0)

    @field_validator("approver_ids", "approver_roles", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _names(value)

    @property
    def open(self) -> bool:
        """Whether anyone may review (no approver list, no approver roles)."""
        return not self.approver_ids and not self.approver_roles


class BotSettings(ReviewPolicy, BaseSettings):
    """Settings of a chat process; see ``.env.example``. The review policy's fields are
    its own (``PROOFROOM_APPROVER_IDS`` ...), so the settings are the policy the desks read.
    The webhook secret is a ``SecretStr`` and the webhook URL (which may carry a token) is
    redacted in a ``repr``; validation errors never quote the values they were given."""

    model_config = SettingsConfigDict(
        env_prefix="PROOFROOM_",
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,
    )

    # Admins (reload the catalog, cancel anyone's job, and what later workflows reserve to
    # them): these ids and role holders; with neither set, the approvers, when an approver
    # list or role is set.
    admin_ids: Names = frozenset()
    admin_roles: Names = frozenset()
    # Where approved images go (PNG + JSON sidecar); None: <data_dir>/approved.
    export_dir: Path | None = None
    # Model for /imagine without --model or a template's model; None: the engine's default.
    default_model: str | None = None
    default_count: int = Field(default=4, ge=1)
    # Consumer group on the job-event stream. The platform is appended, so a Slack bot and
    # a Discord bot on one Redis each see every event; with a stable consumer name a
    # restarted bot is handed back at once what it read but did not acknowledge (under a
    # new name, it takes those over after PROOFROOM_EVENT_CLAIM_IDLE_S).
    event_group: str = "bot"
    event_consumer: str = "main"
    # CSV batches: the most rows one file may have, and the largest file the bot uploads
    # (manifests, zips of approved images; a bigger zip is split).
    batch_max_rows: int = Field(default=500, ge=1)
    upload_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # How long the bot remembers threads, image messages and votes; ``state_ttl_s``, when
    # set, is the same in seconds and wins (a short-lived deployment, the soak test).
    state_ttl_days: int = 90
    state_ttl_s: int | None = Field(default=None, ge=1)
    # Content calendars: the folder of their files (None: <templates dir>/calendars), and
    # channel ids by calendar name (PROOFROOM_CALENDAR_CHANNELS__MARKETING=C0123456789),
    # which switch on a shipped example without editing it.
    calendars_dir: Path | None = None
    calendar_channels: dict[str, str] = Field(default_factory=dict)
    # Approved images POSTed to a CMS (docs/webhooks.md): the URL (empty: off), the secret
    # every delivery is signed with (required with a URL), attempts in all, the first wait
    # between attempts (doubled each time up to the max), how long to wait for an answer,
    # and how long a download URL in a delivery stays valid (stores that sign URLs: S3).
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_attempts: int = Field(default=10, ge=1)
    webhook_backoff_s: float = Field(default=2.0, gt=0)
    webhook_backoff_max_s: float = Field(default=600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_image_url_expires_s: int = Field(default=86400, ge=60, le=7 * 24 * 3600)
    # `proofroom serve`: where the HTTP service (Slack HTTP mode, /healthz, /readyz,
    # /metrics) listens; --host and --port override them.
    serve_host: str = "0.0.0.0"
    serve_port: int = Field(default=3000, ge=0, le=65535)
    # The time zone days, weeks and months are counted in (`/imagine usage week`, quota
    # resets): an IANA name such as Europe/Berlin.
    timezone: str = "UTC"
    # Per-user limits (PROOFROOM_QUOTAS__IMAGES_PER_DAY=40 ...; unset: unlimited; admins are
    # exempt) and the channels (or Discord servers) the bot answers in, by id (empty: all).
    quotas: Quotas = Field(default_factory=Quotas)
    allowed_channels: Names = frozenset()

    @field_validator("admin_ids", "admin_roles", "allowed_channels", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        return _names(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"PROOFROOM_TIMEZONE {value!r} is not a known time zone; use an IANA name "
                "such as UTC or Europe/Berlin"
            ) from None
        return value

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _webhook_url(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None  # PROOFROOM_WEBHOOK_URL= in a .env: off
            if not value.startswith(("http://", "https://")):
                raise ValueError("PROOFROOM_WEBHOOK_URL must start with https:// or http://")
        return value

    @model_validator(mode="after")
    def _webhook_secret_with_url(self) -> BotSettings:
        if self.webhook_url and not (
            self.webhook_secret and self.webhook_secret.get_secret_value()
        ):
            raise ValueError(
                "PROOFROOM_WEBHOOK_URL is set but PROOFROOM_WEBHOOK_SECRET is not: set a "
                "long random secret (the CMS checks each delivery's signature with it), "
                "or leave PROOFROOM_WEBHOOK_URL empty to turn the webhook off"
            )
        return self

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        return redacted_repr_args(super().__repr_args__(), url_fields=frozenset({"webhook_url"}))

    def is_admin(self, user: str, roles: frozenset[str] = frozenset()) -> bool:
        """Whether ``user`` (with ``roles``) is an admin; see ``admin_ids``."""
        if self.admin_ids or self.admin_roles:
            return user in self.admin_ids or bool(roles & self.admin_roles)
        return not self.open and (user in self.approver_ids or bool(roles & self.approver_roles))

    @property
    def state_retention_s(self) -> int:
        """Seconds the bot's keys live after their last write (``state_ttl_s``, else
        ``state_ttl_days``)."""
        return self.state_ttl_s or self.state_ttl_days * 86400

    def export_path(self, settings: Settings) -> Path:
        """The folder approved images are exported to."""
        return self.export_dir or settings.data_dir / "approved"

    def calendars_path(self, settings: Settings) -> Path:
        """The folder content calendars are read from."""
        return self.calendars_dir or settings.templates_dir / "calendars"

    def model_name(self, settings: Settings) -> str:
        """The model used when neither the command nor the template names one."""
        return self.default_model or settings.default_model


def _names(value: object) -> object:
    """A comma-separated list from the environment (``U024BE7LH,U0G9QF9C6``) as a set."""
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return value
