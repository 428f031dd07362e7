"""What a webhook delivery says: the approved image's export metadata (the JSON sidecar),
who approved it and where, and the image itself, inline as base64 or as a download URL
that the store signed. Documented for receivers in ``docs/webhooks.md``."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from pydantic import BaseModel

from bot.records import ImageRecord
from bot.review.export import export_name

EVENT = "image.approved"


class Approval(BaseModel):
    """An approved image waiting in the outbox: everything its delivery sends but the image
    bytes, which are read from the store when it is sent."""

    key: str  # the idempotency key: the same for every attempt and every bot
    platform: str
    image: ImageRecord
    filename: str
    metadata: dict[str, Any]  # the export's JSON sidecar, as written


def delivery_key(image: ImageRecord) -> str:
    """The idempotency key of ``image``'s delivery: the export's file stem
    (``<job>-<index>-<seed>``), so one image is one delivery, however often it is approved
    and by however many bots."""
    return export_name(image)


def approval_of(image: ImageRecord, *, metadata: dict[str, Any]) -> Approval:
    """The delivery of ``image``, approved and exported with ``metadata``."""
    stem = delivery_key(image)
    return Approval(
        key=stem,
        platform=image.message.platform,
        image=image,
        filename=f"{stem}.png",
        metadata=metadata,
    )


def inline_image(approval: Approval, png: bytes) -> dict[str, Any]:
    """The ``image`` member carrying the PNG itself."""
    return {
        "filename": approval.filename,
        "content_type": "image/png",
        "bytes": len(png),
        "sha256": hashlib.sha256(png).hexdigest(),
        "base64": base64.b64encode(png).decode("ascii"),
    }


def linked_image(approval: Approval, url: str, *, expires_s: int) -> dict[str, Any]:
    """The ``image`` member pointing at a signed download URL (an S3-compatible store)."""
    return {
        "filename": approval.filename,
        "content_type": "image/png",
        "url": url,
        "url_expires_s": expires_s,
    }


def body(approval: Approval, *, image: dict[str, Any]) -> bytes:
    """The JSON body of one attempt: compact UTF-8, signed byte for byte as sent."""
    message = approval.image.message
    content = {
        "event": EVENT,
        "idempotency_key": approval.key,
        "approved_by": approval.metadata.get("approved_by", []),
        "approved_at": approval.metadata.get("approved_at"),
        "chat": {
            "platform": message.platform,
            "channel": message.channel,
            "thread": message.thread_id,
            "message": message.id,
        },
        "metadata": approval.metadata,
        "image": image,
    }
    return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
