"""How a delivery is signed, the way Stripe and GitHub sign theirs: an HMAC-SHA256, keyed
with ``PROOFROOM_WEBHOOK_SECRET``, of the timestamp, a dot and the body, sent as
``X-Proofroom-Signature: sha256=<hex>`` beside ``X-Proofroom-Timestamp``. The timestamp is
inside the MAC so that a receiver that refuses old timestamps cannot be sent a captured
delivery again later. ``docs/webhooks.md`` shows a receiver checking it."""

from __future__ import annotations

import hashlib
import hmac

from bot.webhooks.payload import EVENT


def signature(secret: str, *, timestamp: int, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signed_headers(
    secret: str, *, body: bytes, key: str, attempt: int, timestamp: int
) -> dict[str, str]:
    """The headers of one attempt of delivery ``key``."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "proofroom-webhook/1",
        "X-Proofroom-Event": EVENT,
        "X-Proofroom-Delivery": key,
        "X-Proofroom-Attempt": str(attempt),
        "X-Proofroom-Timestamp": str(timestamp),
        "X-Proofroom-Signature": signature(secret, timestamp=timestamp, body=body),
    }
