"""What ``proofroom serve`` reads from Redis for ``/readyz`` and ``/metrics``: at request
time, so that every replica of the service answers the same.

- Live workers and the pools they serve: the pools' directory that each worker's heartbeat
  writes (``engine.pools.PoolDirectory``), in :meth:`ServeState.live_workers`.
- Queues: the RQ queues of this prefix (``{prefix}-{priority}-{pool}``, registered in
  ``rq:queues`` on first use, and those of the pools live workers serve), and their length.
- Counters kept by the writers: jobs ended by outcome (``engine.events.outcomes_key``) and
  images approved and rejected (``bot.state.decisions_key``).
- The usage ledger's totals over all time: jobs, images delivered, GPU seconds
  (``engine.ledger``, read through ``bot.usage.state``).
- The job-event stream's consumer groups (``XINFO GROUPS``): entries not yet read (``lag``)
  and read but not acknowledged (``pending``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib

from bot.state import decisions_key
from bot.usage.state import UsageState
from engine.events import EventStream, outcomes_key
from engine.pools import PoolDirectory
from engine.queue import parse_queue_name, queue_names
from engine.redis_values import as_text
from engine.settings import Settings

RQ_QUEUES = "rq:queues"  # RQ's set of every queue's key
QUEUE_KEY = "rq:queue:"


@dataclass(frozen=True)
class GroupLag:
    """A consumer group of the job-event stream: ``lag`` entries it has not read yet (None
    when Redis cannot tell, e.g. after the stream was trimmed past them) and ``pending``
    entries it read without acknowledging them."""

    name: str
    lag: int | None
    pending: int


@dataclass
class Snapshot:
    """Everything ``/metrics`` reports, read in one go."""

    queue_depths: dict[str, int] = field(default_factory=dict)
    live_workers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    groups: list[GroupLag] = field(default_factory=list)
    usage: dict[str, float] = field(default_factory=dict)  # jobs, images, gpu_s


class ServeState:
    """Read-only access to the keys above; holds no data."""

    def __init__(self, *, redis: redis_lib.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    def ping(self) -> None:
        """Return when Redis answers; raise ``redis.RedisError`` when it does not."""
        self.redis.ping()

    def live_workers(self) -> dict[str, tuple[str, ...]]:
        """Workers of this prefix whose heartbeat is fresh, by name, with the pools they serve
        (none yet while a worker loads its first model)."""
        records = PoolDirectory(redis=self.redis, settings=self.settings).workers()
        return {record.name: record.pools for record in records}

    def queue_depths(self, pools: tuple[str, ...] = ()) -> dict[str, int]:
        """Jobs waiting in each queue of this prefix that RQ knows, and in the queues of
        ``pools`` (those live workers serve: reported at 0 before their first job)."""
        registered = (as_text(k).removeprefix(QUEUE_KEY) for k in self.redis.smembers(RQ_QUEUES))
        served = queue_names(self.settings, list(pools)) if pools else []
        names = sorted({n for n in (*registered, *served) if self.pool_of(n)})
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(QUEUE_KEY + name)
            lengths = pipe.execute()
        return dict(zip(names, (int(n) for n in lengths), strict=True))

    def pool_of(self, queue: str) -> str | None:
        """The pool of one of this prefix's queues (``{prefix}-{priority}-{pool}``); None for
        any other queue (another prefix's, or one whose prefix only starts like this one's)."""
        parsed = self.queue_parts(queue)
        return parsed[1] if parsed is not None else None

    def queue_parts(self, queue: str) -> tuple[str, str] | None:
        """``(priority, pool)`` of one of this prefix's queues; None for any other."""
        return parse_queue_name(self.settings, queue)

    def snapshot(self) -> Snapshot:
        """Queues, live workers, counters and the event stream's groups."""
        workers = self.live_workers()
        served = tuple(dict.fromkeys(pool for pools in workers.values() for pool in pools))
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(outcomes_key(self.settings))
            pipe.hgetall(decisions_key(self.settings.key_prefix))
            outcomes, decisions = pipe.execute()
        return Snapshot(
            queue_depths=self.queue_depths(served),
            live_workers=workers,
            outcomes=_counts(outcomes),
            decisions=_counts(decisions),
            groups=self.event_groups(),
            usage=UsageState(redis=self.redis, settings=self.settings).totals(),
        )

    def event_groups(self) -> list[GroupLag]:
        """The consumer groups of the job-event stream (none before the first event)."""
        stream = EventStream(redis=self.redis, settings=self.settings).key
        try:
            groups: Any = self.redis.xinfo_groups(stream)
        except redis_lib.ResponseError:  # no such key: nothing was ever published
            return []
        return [
            GroupLag(
                name=as_text(group["name"]),
                lag=None if group.get("lag") is None else int(group["lag"]),
                pending=int(group.get("pending") or 0),
            )
            for group in groups
        ]


def _counts(raw: dict[Any, Any]) -> dict[str, int]:
    return {as_text(k): int(v) for k, v in raw.items()}
