"""What an API request may send: a body-size limit, enforced on the declared
``Content-Length`` and again on the bytes as they stream in (a client may declare nothing,
or lie), and base64 images decoded only when their size allows it; their content is then
checked like a chat attachment (``bot.jobs.attachments``: the header before any decoding,
so a decompression bomb is refused) before anything is queued (``bot.api.jobs``).

Settings (environment): ``PROOFROOM_API_MAX_BODY_BYTES`` (default 25 MiB),
``PROOFROOM_API_WAIT_TIMEOUT_S`` (how long a request that answers when its job is done,
the A1111 routes, waits: default 300 s).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException
from starlette.requests import Request

from engine.errors import UserError

_DATA_URL = re.compile(r"^data:[A-Za-z0-9.+/-]*(;[A-Za-z0-9=.+-]*)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")


class ApiSettings(BaseSettings):
    """The API's own settings (``PROOFROOM_API_*``)."""

    model_config = SettingsConfigDict(env_prefix="PROOFROOM_API_", extra="ignore")

    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    wait_timeout_s: float = Field(default=300.0, gt=0)


class FieldError(UserError):
    """A request field that cannot be used: a 422 naming ``field``."""

    kind = "invalid_field"

    def __init__(self, message: str, *, field: str | None) -> None:
        super().__init__(message)
        self.field = field


def too_large(limit: int) -> HTTPException:
    """The 413 for a body over ``limit`` bytes."""
    return HTTPException(
        413,
        detail=f"the request body is over the limit of {_megabytes(limit)} "
        "(PROOFROOM_API_MAX_BODY_BYTES); send smaller images",
    )


async def read_body(request: Request, *, limit: int) -> bytes:
    """The body, refused with 413 once it is known to pass ``limit``: from its declared
    length before reading, else while it streams in (nothing past the limit is kept)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large(limit)
        except ValueError:
            raise HTTPException(400, detail="Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, limit: int) -> Any:
    """The body as JSON (:func:`read_body`); a 422 :class:`FieldError` when it is not."""
    body = await read_body(request, limit=limit)
    if not body.strip():
        raise FieldError("the request needs a JSON body", field=None)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FieldError(f"the body is not valid JSON ({exc})", field=None) from None


def decode_image(value: str, *, field: str, max_bytes: int) -> bytes:
    """The bytes of a base64 image (a ``data:image/...;base64,`` prefix is allowed);
    :class:`FieldError` when it is not base64 or would decode to more than ``max_bytes``,
    found from its length before decoding."""
    text = _DATA_URL.sub("", value.strip(), count=1)
    try:
        raw = _WHITESPACE.sub(b"", text.encode("ascii"))
    except UnicodeEncodeError:
        raise FieldError(f"`{field}` is not a base64 image", field=field) from None
    decoded_size = len(raw) * 3 // 4
    if decoded_size > max_bytes:
        raise FieldError(
            f"`{field}` is {_megabytes(decoded_size)}; images may be at most "
            f"{_megabytes(max_bytes)}. Resize or compress it and send it again.",
            field=field,
        )
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FieldError(f"`{field}` is not a base64 image", field=field) from None
    if not data:
        raise FieldError(f"`{field}` is empty", field=field)
    return data


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


__all__ = ["ApiSettings", "FieldError", "decode_image", "read_body", "read_json", "too_large"]
