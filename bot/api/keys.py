"""API keys: who an application is, for quotas, the ledger and the review.

A key is ``pr_`` and 32 random URL-safe characters, shown once when it is made
(``proofroom api-key create``); Redis keeps only its SHA-256, so a copy of the database
gives nobody a key. Each key names a ``user`` (the quotas and the usage ledger count its
jobs as that user's) and, optionally, a review channel on a chat platform: its jobs then
open a thread there like any ``/imagine`` (``bot.api.jobs``).

Per-key values (``default_model``, ``latest_job``) are the A1111 "global" options, per key
here. Redis keys: ``bot.api.state``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import redis as redis_lib

from bot.api.state import ApiState
from bot.ports import requester_key
from engine.errors import UserError

SECRET_PREFIX = "pr_"
PLATFORMS = ("slack", "discord")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The id printed by ``api-key list``: short hex, never a prefix of a secret.
_ID = re.compile(r"^[0-9a-f]{8}$")


@dataclass(frozen=True)
class ApiKey:
    """One key, without its secret. ``review_platform`` is set whenever ``review_channel`` is."""

    id: str
    name: str
    user: str
    review_channel: str | None = None
    review_platform: str | None = None
    created_at: float = 0.0

    @property
    def platform(self) -> str:
        """Where the key's user is known: its review platform, else ``api``."""
        return self.review_platform or "api"

    @property
    def requested_by(self) -> str:
        """``JobSpec.requested_by`` of the key's jobs, the user of its quotas and ledger:
        ``api:<user>``, or ``<platform>:<user>`` when the key names a review platform (its
        user is then that platform's user, who shares their chat quotas with the key)."""
        return requester_key(self.platform, self.user)


def hash_secret(secret: str) -> str:
    """The SHA-256 that Redis keeps of ``secret``."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """The keys of one key prefix."""

    def __init__(self, *, redis: redis_lib.Redis, key_prefix: str) -> None:
        self.state = ApiState(redis=redis, key_prefix=key_prefix)

    def create(
        self,
        *,
        name: str,
        user: str,
        review_channel: str | None = None,
        review_platform: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once, never stored); :class:`UserError` for a
        name in use or malformed, or a review channel without its platform."""
        if not _NAME.match(name):
            raise UserError(
                f"`{name}` cannot name a key; use letters, digits, `.`, `_` and `-` "
                "(at most 64), starting with a letter or digit"
            )
        if _ID.match(name):
            raise UserError(f"`{name}` looks like a key id; choose a name with other letters")
        if not user.strip():
            raise UserError("a key needs the user its jobs count for (--user)")
        if (review_channel is None) != (review_platform is None):
            raise UserError("a review channel needs its platform: give --platform slack|discord")
        if review_platform is not None and review_platform not in PLATFORMS:
            raise UserError(f"--platform takes {' or '.join(PLATFORMS)}, not `{review_platform}`")
        if self._by_name(name) is not None:
            raise UserError(f"a key named `{name}` exists; revoke it first or choose another name")
        secret = SECRET_PREFIX + secrets.token_urlsafe(24)  # 24 bytes: 32 characters
        key = ApiKey(
            id=secrets.token_hex(4),
            name=name,
            user=user.strip(),
            review_channel=review_channel,
            review_platform=review_platform,
            created_at=time.time(),
        )
        fields = {
            "id": key.id,
            "name": key.name,
            "user": key.user,
            "review_channel": key.review_channel or "",
            "review_platform": key.review_platform or "",
            "created_at": repr(key.created_at),
        }
        self.state.add_key(key_id=key.id, digest=hash_secret(secret), fields=fields)
        return key, secret

    def find(self, secret: str) -> ApiKey | None:
        """The key whose secret is ``secret``; None for an unknown or revoked one."""
        if not secret.startswith(SECRET_PREFIX):
            return None
        fields = self.state.key_fields(hash_secret(secret))
        return _key(fields) if fields else None

    def list(self) -> list[ApiKey]:
        """Every key, oldest first (no secrets: Redis has none)."""
        found = [_key(fields) for fields in self.state.all_key_fields()]
        return sorted(found, key=lambda k: (k.created_at, k.name))

    def get(self, key_id: str) -> ApiKey | None:
        """The key with id ``key_id``."""
        digest = self.state.key_digest(key_id)
        fields = self.state.key_fields(digest) if digest is not None else {}
        return _key(fields) if fields else None

    def revoke(self, key_id_or_name: str) -> bool:
        """Revoke the key with this id or name at once; False when there is none."""
        key = self.get(key_id_or_name) or self._by_name(key_id_or_name)
        if key is None:
            return False
        self.state.delete_key(key.id)
        return True

    # -- per-key values (A1111's global options, per key here) ------------------------------

    def set_default_model(self, key: ApiKey, model: str) -> None:
        """The model the key's A1111 requests use when they name none."""
        self.state.set_key_value(key.id, "default_model", model)

    def default_model(self, key: ApiKey) -> str | None:
        """What :meth:`set_default_model` set, or None."""
        return self.state.key_value(key.id, "default_model")

    def set_latest_job(self, key: ApiKey, job_id: str) -> None:
        """The key's most recent job (A1111's ``progress`` reports it)."""
        self.state.set_key_value(key.id, "latest_job", job_id)

    def latest_job(self, key: ApiKey) -> str | None:
        """What :meth:`set_latest_job` set, or None."""
        return self.state.key_value(key.id, "latest_job")

    def _by_name(self, name: str) -> ApiKey | None:
        return next((k for k in self.list() if k.name == name), None)


def _key(fields: dict[str, str]) -> ApiKey:
    return ApiKey(
        id=fields["id"],
        name=fields["name"],
        user=fields["user"],
        review_channel=fields.get("review_channel") or None,
        review_platform=fields.get("review_platform") or None,
        created_at=float(fields.get("created_at") or 0),
    )


__all__ = ["PLATFORMS", "SECRET_PREFIX", "ApiKey", "ApiKeys", "hash_secret"]
