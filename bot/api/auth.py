"""Who is calling: the API key of a request, as ``Authorization: Bearer <key>`` or as the
password of HTTP Basic auth (A1111 clients send ``--api-auth user:password`` that way; the
user name is ignored). Without a valid key: 401 with a ``WWW-Authenticate`` that names both.
"""

from __future__ import annotations

import base64
import binascii

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from bot.api.keys import ApiKey, ApiKeys

CHALLENGE = 'Basic realm="proofroom", Bearer'
NO_KEY = (
    "this API needs a key: send `Authorization: Bearer <key>` (or the key as the password "
    "of HTTP Basic auth); `proofroom api-key create` makes one"
)
BAD_KEY = "this API key is not valid (unknown or revoked); ask an admin for a new one"


def secret_of(request: HTTPConnection) -> str | None:
    """The key a request carries, or None when it carries none in a form we read."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def require_key(request: HTTPConnection, keys: ApiKeys) -> ApiKey:
    """The caller's key; ``HTTPException(401)`` without a valid one. One Redis read: call it
    from a thread (Starlette's pool) in async routes, like any other blocking call."""
    secret = secret_of(request)
    key = keys.find(secret) if secret else None
    if key is None:
        raise HTTPException(
            401, detail=BAD_KEY if secret else NO_KEY, headers={"WWW-Authenticate": CHALLENGE}
        )
    return key


__all__ = ["CHALLENGE", "require_key", "secret_of"]
