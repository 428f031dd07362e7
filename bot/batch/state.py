"""The Redis keys of CSV batches, under ``{key_prefix}:bot:`` and expiring with the bot's state:

- ``batch:{batch_id}`` hash: ``meta`` (JSON: platform, channel, requester, thread, progress
  message, rows, variations, file name, start time), ``row:{n}`` (the row's latest job),
  ``job:{job_id}`` (its row), ``status:{job_id}`` (how the job ended), ``generation`` (retry
  rounds, so each round posts its manifest once), ``progress:text`` (the text last shown);
- ``batches:{channel}`` list of the channel's batch ids, newest last.

The desk (``bot.batch.desk``) writes them; the report (``bot.batch.report``) reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import redis as redis_lib

from engine.redis_values import as_text


class BatchState:
    """Typed access to the batch keys; holds no data."""

    def __init__(self, *, redis: redis_lib.Redis, key_prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.base = f"{key_prefix}:bot"
        self.ttl_s = ttl_s

    def create(self, batch_id: str, *, channel: str, fields: Mapping[str, str]) -> None:
        """Write a new batch's hash and make it the channel's latest, in one round trip."""
        key, listed = self.key(batch_id), self._channel_key(channel)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=cast(Any, dict(fields)))  # redis-py's stubs: str keys are fine
            pipe.expire(key, self.ttl_s)
            pipe.rpush(listed, batch_id)
            pipe.expire(listed, self.ttl_s)
            pipe.execute()

    def fields(self, batch_id: str) -> dict[str, str] | None:
        """The batch's hash in one read, or None for a batch that does not exist (or was
        never queued whole)."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.key(batch_id)))
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return fields if "meta" in fields else None

    def forget(self, batch_id: str) -> None:
        """Drop a batch that could not be queued whole."""
        self.redis.delete(self.key(batch_id))

    def latest(self, channel: str) -> str | None:
        """The newest batch of ``channel``."""
        raw = self.redis.lindex(self._channel_key(channel), -1)
        return as_text(raw) if raw is not None else None

    def set_row_job(self, batch_id: str, *, row: int, job_id: str) -> None:
        """Row ``row`` is now rendered by ``job_id`` (a retry)."""
        self.redis.hset(
            self.key(batch_id), mapping={f"row:{row}": job_id, f"job:{job_id}": str(row)}
        )

    def set_status(self, batch_id: str, *, job_id: str, kind: str) -> None:
        """How a batch job ended (``done``, ``failed``, ``cancelled``)."""
        self.redis.hset(self.key(batch_id), f"status:{job_id}", kind)

    def next_generation(self, batch_id: str) -> None:
        """Start a retry round: its manifest is posted again once its rows end."""
        self.redis.hincrby(self.key(batch_id), "generation", 1)

    def set_progress_text(self, batch_id: str, text: str) -> None:
        """Remember what the progress message shows, so an unchanged text is not edited."""
        self.redis.hset(self.key(batch_id), "progress:text", text)

    def key(self, batch_id: str) -> str:
        """The batch's hash."""
        return f"{self.base}:batch:{batch_id}"

    def _channel_key(self, channel: str) -> str:
        return f"{self.base}:batches:{channel}"
