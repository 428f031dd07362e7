"""The API's keys in Redis (all under the settings' key prefix):

- ``{prefix}:apikey:{sha256}``: hash of one key's fields (``id``, ``name``, ``user``, ...);
  the secret itself is never stored;
- ``{prefix}:apikeys``: hash ``id -> sha256``, the index of every key;
- ``{prefix}:apikey-values:{id}``: per-key values (``default_model``, ``latest_job``);
- ``{prefix}:api:job:{job_id}``: hash of one API job: ``key`` (its key's id), ``spec``,
  ``state``, ``position``, ``step``, ``total``, ``message``, ``error_kind``, ``result``;
- ``{prefix}:api:artifact:{artifact_id}``: the API job an image belongs to.

Job records and the artifact index are kept ``ttl_s`` (the bot's ``state_ttl_days``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import redis as redis_lib

from engine.redis_values import as_text


class ApiState:
    """Reads and writes of ``bot.api.keys`` and ``bot.api.jobs``."""

    def __init__(self, *, redis: redis_lib.Redis, key_prefix: str, ttl_s: int = 0) -> None:
        self.redis = redis
        self.prefix = key_prefix
        self.ttl_s = ttl_s

    # -- keys ------------------------------------------------------------------------------

    def add_key(self, *, key_id: str, digest: str, fields: dict[str, str]) -> None:
        """Store a key's ``fields`` under its secret's ``digest``."""
        with self.redis.pipeline() as pipe:
            pipe.hset(self._key_key(digest), mapping=cast(Any, fields))
            pipe.hset(self._index_key(), key_id, digest)
            pipe.execute()

    def key_fields(self, digest: str) -> dict[str, str]:
        """The fields of the key with secret ``digest``; empty when there is none."""
        return _text(self.redis.hgetall(self._key_key(digest)))

    def key_digest(self, key_id: str) -> str | None:
        """The digest of the key with id ``key_id``."""
        value = self.redis.hget(self._index_key(), key_id)
        return as_text(value) if value is not None else None

    def all_key_fields(self) -> list[dict[str, str]]:
        """The fields of every key in the index (one round trip for all of them)."""
        digests = [as_text(d) for d in cast(list[bytes], self.redis.hvals(self._index_key()))]
        with self.redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hgetall(self._key_key(digest))
            return [fields for fields in map(_text, pipe.execute()) if fields]

    def delete_key(self, key_id: str) -> None:
        """Forget key ``key_id``: its fields, its index entry and its values."""
        digest = self.key_digest(key_id)
        with self.redis.pipeline() as pipe:
            if digest is not None:
                pipe.delete(self._key_key(digest))
            pipe.hdel(self._index_key(), key_id)
            pipe.delete(self._values_key(key_id))
            pipe.execute()

    def set_key_value(self, key_id: str, name: str, value: str) -> None:
        """One per-key value (``default_model``, ``latest_job``)."""
        self.redis.hset(self._values_key(key_id), name, value)

    def key_value(self, key_id: str, name: str) -> str | None:
        """What :meth:`set_key_value` set, or None."""
        value = self.redis.hget(self._values_key(key_id), name)
        return as_text(value) if value is not None else None

    # -- jobs ------------------------------------------------------------------------------

    def add_job(
        self, job_id: str, *, fields: dict[str, str], artifacts: Iterable[str] = ()
    ) -> None:
        """Record a job about to be queued, and the artifacts (its inputs) that are its."""
        key = self._job_key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=cast(Any, fields))
            pipe.expire(key, self.ttl_s)
            for artifact_id in artifacts:
                pipe.set(self._artifact_key(artifact_id), job_id, ex=self.ttl_s)
            pipe.execute()

    def job(self, job_id: str) -> dict[str, str]:
        """A job's record; empty when unknown or expired."""
        return _text(self.redis.hgetall(self._job_key(job_id)))

    def job_state(self, job_id: str) -> str | None:
        """A job's recorded state, or None when there is no record."""
        value = self.redis.hget(self._job_key(job_id), "state")
        return as_text(value) if value is not None else None

    def update_job(
        self, job_id: str, *, fields: dict[str, str], artifacts: Iterable[str] = ()
    ) -> None:
        """Change a job's record; ``artifacts``: its results, now its too."""
        with self.redis.pipeline() as pipe:
            for artifact_id in artifacts:
                pipe.set(self._artifact_key(artifact_id), job_id, ex=self.ttl_s)
            pipe.hset(self._job_key(job_id), mapping=cast(Any, fields))
            pipe.execute()

    def delete_job(self, job_id: str) -> None:
        """Forget a job that was not queued after all."""
        self.redis.delete(self._job_key(job_id))

    def artifact_job(self, artifact_id: str) -> str | None:
        """The job an artifact belongs to, or None."""
        value = self.redis.get(self._artifact_key(artifact_id))
        return as_text(value) if value is not None else None

    # -- internals --------------------------------------------------------------------------

    def _key_key(self, digest: str) -> str:
        return f"{self.prefix}:apikey:{digest}"

    def _index_key(self) -> str:
        return f"{self.prefix}:apikeys"

    def _values_key(self, key_id: str) -> str:
        return f"{self.prefix}:apikey-values:{key_id}"

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}:api:job:{job_id}"

    def _artifact_key(self, artifact_id: str) -> str:
        return f"{self.prefix}:api:artifact:{artifact_id}"


def _text(raw: Any) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in (raw or {}).items()}


__all__ = ["ApiState"]
