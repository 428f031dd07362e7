"""Values as they come back from Redis: ``bytes`` from a plain client, ``str`` from one made
with ``decode_responses`` or from fakeredis in some paths. One conversion for all readers."""

from __future__ import annotations


def as_text(value: bytes | str) -> str:
    """``value`` as ``str`` (UTF-8 when it is bytes)."""
    return value.decode() if isinstance(value, bytes) else value
