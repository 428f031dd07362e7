"""Values as they come back from Redis: ``bytes`` from a plain client, ``str`` from one made
with ``decode_responses`` or from fakeredis in some paths. One conversion for all readers;
and the compare-and-delete that gives a lock or lease back."""

from __future__ import annotations

import redis as redis_lib


def as_text(value: bytes | str) -> str:
    """``value`` as ``str`` (UTF-8 when it is bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def delete_if_held(redis: redis_lib.Redis, key: str, *, token: str) -> None:
    """Delete ``key`` only while it still holds ``token``: a lock or lease given back by its
    holder. One that ran out meanwhile and was taken by another holder stays theirs."""
    with redis.pipeline() as pipe:
        try:
            pipe.watch(key)
            if as_text(pipe.get(key) or b"") == token:
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
        except redis_lib.WatchError:
            pass  # changed between the read and the delete: no longer ours
