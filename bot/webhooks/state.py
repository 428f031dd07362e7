"""The webhook outbox in Redis: one record per approved image, written when the image is
exported and kept after it is delivered, so that an image approved again, a reaction the
platform delivers twice, or two bots on one Redis never send it twice, and a delivery left
waiting when a bot stops goes out after its restart.

Keys, under ``{key_prefix}:bot:``:

- ``webhook:{delivery key}`` hash: ``approval`` (what is sent, :class:`Approval`),
  ``status`` (pending, delivered, failed), ``attempts``, ``error`` (the last failure),
  ``finished_at``; expires ``state_ttl_days`` after its last write;
- ``webhook-due:{platform}`` sorted set: delivery keys still to send, by the time (Unix
  seconds) of their next attempt; each platform's bot sends its own platform's approvals
  (it is the one that can tell their threads);
- ``webhook-claim:{delivery key}``: the bot sending it now (SET NX with a lease), so that two
  bots never send one delivery at the same time; a bot that dies while sending leaves a
  lease that runs out, and the delivery is sent again with the same key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, cast

import redis as redis_lib

from bot.webhooks.payload import Approval
from engine.redis_values import as_text, delete_if_held

Status = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class Outboxed:
    """One record of the outbox as it stands."""

    approval: Approval
    status: Status
    attempts: int
    error: str


class WebhookState:
    """Typed access to the outbox keys; holds no data."""

    def __init__(self, *, redis: redis_lib.Redis, key_prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.base = f"{key_prefix}:bot"
        self.ttl_s = ttl_s

    def add(self, approval: Approval, *, due_at: float) -> bool:
        """Put a delivery in the outbox, due at ``due_at``; False (and nothing changes) when
        its key is there already: pending, delivered or failed."""
        key = self._key("webhook", approval.key)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    return False
                pipe.multi()
                pipe.hset(
                    key,
                    mapping={
                        "approval": approval.model_dump_json(),
                        "status": "pending",
                        "attempts": 0,
                    },
                )
                pipe.expire(key, self.ttl_s)
                pipe.zadd(self._due(approval.platform), {approval.key: due_at})
                pipe.execute()
                return True
            except redis_lib.WatchError:
                return False  # another bot added it between our read and our write

    def withdraw(self, key: str, *, platform: str) -> bool:
        """Drop a delivery that has not gone out yet (its approval was taken back); True
        when one was dropped. A delivered or failed record stays."""
        record = self._key("webhook", key)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(record)
                if as_text(pipe.hget(record, "status") or b"") != "pending":
                    return False
                pipe.multi()
                pipe.delete(record)
                pipe.zrem(self._due(platform), key)
                pipe.execute()
                return True
            except redis_lib.WatchError:
                return False

    def record(self, key: str) -> Outboxed | None:
        """The outbox record of ``key``, or None."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self._key("webhook", key)))
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        if "approval" not in fields:
            return None
        return Outboxed(
            approval=Approval.model_validate_json(fields["approval"]),
            status=cast(Status, fields.get("status", "pending")),
            attempts=int(fields.get("attempts", 0)),
            error=fields.get("error", ""),
        )

    def due(self, platform: str, *, now: float, count: int = 20) -> list[str]:
        """Keys of ``platform`` whose next attempt is due at ``now``, oldest first."""
        members = self.redis.zrangebyscore(self._due(platform), "-inf", now, start=0, num=count)
        return [as_text(m) for m in cast(list[bytes], members)]

    def due_at(self, key: str, *, platform: str) -> float | None:
        """When ``key``'s next attempt is due, or None when it is not waiting to be sent."""
        score = self.redis.zscore(self._due(platform), key)
        return float(score) if score is not None else None

    def next_due_at(self, platform: str) -> float | None:
        """When the next delivery of ``platform`` is due, or None with nothing to send."""
        first = cast(
            list[tuple[bytes, float]],
            self.redis.zrange(self._due(platform), 0, 0, withscores=True),
        )
        return float(first[0][1]) if first else None

    def claim(self, key: str, *, owner: str, lease_s: float) -> bool:
        """Take ``key`` for sending, for at most ``lease_s``; False when another has it."""
        claim = self._key("webhook-claim", key)
        return bool(self.redis.set(claim, owner, nx=True, px=max(1, int(lease_s * 1000))))

    def release(self, key: str, *, owner: str) -> None:
        """Give ``key`` back, if ``owner`` still holds it (a lease that ran out is another's)."""
        delete_if_held(self.redis, self._key("webhook-claim", key), token=owner)

    def finish(
        self, key: str, *, platform: str, status: Status, attempts: int, error: str = ""
    ) -> None:
        """Record the end of a delivery (delivered, or failed for good): off the due list."""
        record = self._key("webhook", key)
        with self.redis.pipeline() as pipe:
            pipe.hset(
                record,
                mapping={
                    "status": status,
                    "attempts": attempts,
                    "error": error,
                    "finished_at": f"{time.time():.3f}",
                },
            )
            pipe.expire(record, self.ttl_s)
            pipe.zrem(self._due(platform), key)
            pipe.execute()

    def retry_at(self, key: str, *, platform: str, at: float, attempts: int, error: str) -> None:
        """Record a failed attempt and when to try again."""
        record = self._key("webhook", key)
        with self.redis.pipeline() as pipe:
            pipe.hset(record, mapping={"attempts": attempts, "error": error})
            pipe.expire(record, self.ttl_s)
            pipe.zadd(self._due(platform), {key: at})
            pipe.execute()

    def forget_due(self, key: str, *, platform: str) -> None:
        """Take a key off the due list (its record is finished or gone)."""
        self.redis.zrem(self._due(platform), key)

    def _due(self, platform: str) -> str:
        return self._key("webhook-due", platform)

    def _key(self, *parts: str) -> str:
        return ":".join((self.base, *parts))
