"""Worker pools: which pools a worker serves, and which live workers serve each pool, as
their heartbeats say. No torch: the bot, ``/readyz`` and ``proofroom doctor`` read it too.

A pool is a name for a set of queues, ``{prefix}-{priority}-{pool}`` (``engine.queue``): a
model's ``pool:`` in models.yaml, else its family. A worker serves the pools of the queues it
listens on: ``proofroom worker --pools sdxl,turbo`` and ``--family sd15`` (the pool of the
sd15 models that name none) add up; with neither, every pool the catalog knows
(:func:`served_pools`).

Every beat of a worker's heartbeat (``engine.recovery.Heartbeat``) calls
:meth:`PoolDirectory.record_beat`, which reads the queues the worker registered with RQ
(``rq:worker:{name}``, field ``queues``: what it really listens on, however it was started,
the embedded worker included) and writes, on Redis's clock (``TIME`` in ms, so that hosts
with skewed clocks agree):

- ``{prefix}:pools:seen``: hash pool -> ms of the last beat of a worker serving it. Kept
  when the worker stops: it says how long ago a pool last had a worker (the bot's grace
  window, ``bot.jobs.routing``).
- ``{prefix}:pools:workers``: hash worker name -> JSON ``{"pools", "host", "pid",
  "beat_ms", "ttl_ms"}``. A record is live until ``beat_ms + ttl_ms`` (the heartbeat's TTL,
  as the worker's alive key); a clean stop deletes it (:meth:`PoolDirectory.forget`), and
  one dead for over an hour is dropped when read. A worker still loading its first model
  has not registered with RQ yet: its record is live with no pools (readers look at its
  registration again, so it serves its pools from the moment it listens, not from its next
  beat).

Readers use :class:`PoolDirectory`: :meth:`~PoolDirectory.workers` (live ones),
:meth:`~PoolDirectory.live_pools`, :meth:`~PoolDirectory.last_seen`,
:meth:`~PoolDirectory.status` / :meth:`~PoolDirectory.statuses` (one round trip), and with a
catalog :meth:`~PoolDirectory.idle_pools`, :meth:`~PoolDirectory.workers_by_model`,
:meth:`~PoolDirectory.workers_by_family`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import redis as redis_lib

from engine.catalog import Catalog, check_pool_name
from engine.queue import FAMILIES, parse_queue_name
from engine.redis_values import as_text
from engine.settings import Settings

log = logging.getLogger(__name__)

# A dead worker's record is dropped this long after its last beat (a clean stop drops it
# at once); until then `proofroom doctor` can say when it was last heard from.
PRUNE_AFTER_MS = 3600 * 1000


def known_pools(catalog: Catalog) -> list[str]:
    """Every pool: the families (the pools of models that name none), then the pools named
    in the catalog, sorted."""
    named = {model.pool for model in catalog.models.values()}
    return [*FAMILIES, *sorted(named - set(FAMILIES))]


def served_pools(
    *,
    catalog: Catalog,
    families: Sequence[str] | None = None,
    pools: Sequence[str] | None = None,
    warn: bool = True,
) -> list[str]:
    """The pools a worker started with ``--family`` (``families``) and ``--pools``
    (``pools``) serves: both together, in the order given; neither: :func:`known_pools`.
    :class:`ValueError` for an unknown family or a name that cannot be a pool; a pool that
    no model names yet is served all the same (models.yaml may name it later), with a
    warning in the log (``warn``)."""
    unknown = [family for family in families or () if family not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown model family {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    for pool in pools or ():
        check_pool_name(pool)
    chosen = list(dict.fromkeys([*(families or ()), *(pools or ())]))
    if not chosen:
        return known_pools(catalog)
    known = known_pools(catalog)
    for pool in chosen:
        if warn and pool not in known:
            log.warning(
                "no model of the catalog is in pool %s yet (pools: %s); serving it anyway",
                pool,
                ", ".join(known),
            )
    return chosen


def pools_of(settings: Settings, queue_names: Iterable[str]) -> tuple[str, ...]:
    """The pools of ``queue_names`` (this prefix's queues only), each once, in order."""
    found = (parse_queue_name(settings, name) for name in queue_names)
    return tuple(dict.fromkeys(parsed[1] for parsed in found if parsed is not None))


@dataclass(frozen=True)
class WorkerRecord:
    """A worker as its last beat described it; times are Redis's, in ms."""

    name: str
    pools: tuple[str, ...]
    host: str
    pid: int
    beat_ms: int
    ttl_ms: int

    def live(self, now_ms: int) -> bool:
        """Whether the worker beat within its TTL before ``now_ms``."""
        return now_ms <= self.beat_ms + self.ttl_ms

    def to_json(self) -> str:
        """The record as stored in ``{prefix}:pools:workers``."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "name"})

    @classmethod
    def from_json(cls, name: str, raw: bytes | str) -> WorkerRecord | None:
        """A stored record; ``None`` when it cannot be read (another version's, corrupt)."""
        try:
            data = json.loads(raw)
            return cls(
                name=name,
                pools=tuple(str(p) for p in data["pools"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                beat_ms=int(data["beat_ms"]),
                ttl_ms=int(data["ttl_ms"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class PoolStatus:
    """One pool now: its live workers, and when a worker last served it (Redis ms)."""

    pool: str
    now_ms: int
    last_seen_ms: int | None
    workers: tuple[str, ...]  # names of the live workers serving it

    @property
    def live(self) -> bool:
        """Whether a live worker serves the pool now."""
        return bool(self.workers)

    @property
    def age_s(self) -> float | None:
        """Seconds since a worker last served the pool; ``None`` if none ever did."""
        if self.last_seen_ms is None:
            return None
        return max(0, self.now_ms - self.last_seen_ms) / 1000

    def seen_within(self, seconds: float) -> bool:
        """Whether a worker serves the pool now or did within the last ``seconds``."""
        age = self.age_s
        return self.live or (age is not None and age <= seconds)


class PoolDirectory:
    """The pools' side of the workers' heartbeats: written by each beat, read by anyone."""

    def __init__(self, *, redis: redis_lib.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.seen_key = f"{settings.key_prefix}:pools:seen"
        self.workers_key = f"{settings.key_prefix}:pools:workers"

    # -- the workers' side ---------------------------------------------------------------

    def record_beat(self, *, worker: str, ttl_s: float) -> WorkerRecord:
        """Record a beat of ``worker`` (this process) now: live for ``ttl_s``, serving the
        pools of the queues it registered with RQ (none before it registered, or once it
        registered its death); those pools are seen now. Two round trips."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hmget(f"rq:worker:{worker}", ["queues", "death"])
            clock, (queues, death) = pipe.execute()
        now = _ms(clock)
        listens = [] if death or not queues else as_text(queues).split(",")
        record = WorkerRecord(
            name=worker,
            pools=pools_of(self.settings, listens),
            host=socket.gethostname(),
            pid=os.getpid(),
            beat_ms=now,
            ttl_ms=int(ttl_s * 1000),
        )
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.workers_key, worker, record.to_json())
            if record.pools:
                pipe.hset(self.seen_key, mapping=dict.fromkeys(record.pools, now))
            pipe.execute()
        return record

    def forget(self, worker: str) -> None:
        """Drop ``worker``'s record (it stopped, or died); the pools it served stay seen."""
        self.redis.hdel(self.workers_key, worker)

    # -- readers -------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Redis's clock, in ms: what beats and ages are measured on."""
        return _ms(self.redis.time())

    def last_seen(self, pool: str) -> int | None:
        """Redis ms of the last beat of a worker serving ``pool``; ``None`` if none ever did."""
        raw = self.redis.hget(self.seen_key, pool)
        return int(raw) if raw is not None else None

    def seen(self) -> dict[str, int]:
        """Every pool a worker ever served -> Redis ms of the last such beat."""
        return {as_text(k): int(v) for k, v in self.redis.hgetall(self.seen_key).items()}

    def workers(self) -> list[WorkerRecord]:
        """The live workers, by name (records dead for an hour are dropped on the way)."""
        now, records, _ = self._snapshot(())
        return [record for record in records if record.live(now)]

    def live_pools(self) -> set[str]:
        """The pools a live worker serves now."""
        return {pool for record in self.workers() for pool in record.pools}

    def status(self, pool: str) -> PoolStatus:
        """Where ``pool`` stands now (one round trip)."""
        return self.statuses([pool])[pool]

    def statuses(self, pools: Iterable[str]) -> dict[str, PoolStatus]:
        """Where each of ``pools`` stands now, in one round trip."""
        wanted = list(dict.fromkeys(pools))
        now, records, seen = self._snapshot(wanted)
        live = [record for record in records if record.live(now)]
        return {
            pool: PoolStatus(
                pool=pool,
                now_ms=now,
                last_seen_ms=seen.get(pool),
                workers=tuple(r.name for r in live if pool in r.pools),
            )
            for pool in wanted
        }

    def idle_pools(self, catalog: Catalog) -> list[str]:
        """The pools of ``catalog``'s models that no live worker serves now (``/readyz``)."""
        pools = sorted({model.pool for model in catalog.models.values()})
        return [pool for pool, status in self.statuses(pools).items() if not status.live]

    def workers_by_model(self, catalog: Catalog) -> dict[str, list[WorkerRecord]]:
        """Each model of ``catalog`` -> the live workers serving its pool (maybe none)."""
        live = self.workers()
        return {
            name: [record for record in live if model.pool in record.pools]
            for name, model in catalog.models.items()
        }

    def workers_by_family(self, catalog: Catalog) -> dict[str, list[WorkerRecord]]:
        """Each family -> the live workers serving the pool of at least one of its models
        (or the family's own pool), by name."""
        live = self.workers()
        result: dict[str, list[WorkerRecord]] = {}
        for family in FAMILIES:
            pools = {family} | {m.pool for m in catalog.models.values() if m.family == family}
            result[family] = [record for record in live if pools & set(record.pools)]
        return result

    def _snapshot(self, pools: Sequence[str]) -> tuple[int, list[WorkerRecord], dict[str, int]]:
        """Redis's clock, every worker record, and when each of ``pools`` was last seen."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(self.workers_key)
            if pools:
                pipe.hmget(self.seen_key, list(pools))
            clock, raw_records, *rest = pipe.execute()
        now = _ms(clock)
        records, stale = [], []
        for raw_name, raw in sorted(raw_records.items()):
            name = as_text(raw_name)
            record = WorkerRecord.from_json(name, raw)
            if record is None or now - record.beat_ms > PRUNE_AFTER_MS:
                stale.append(name)
            else:
                records.append(record)
        if stale:  # crashed long ago (a clean stop forgets itself): nobody reads these
            self.redis.hdel(self.workers_key, *stale)
        records = self._registered_since(records, now)
        seen = {
            pool: int(raw)
            for pool, raw in zip(pools, rest[0] if rest else [], strict=True)
            if raw is not None
        }
        return now, records, seen

    def _registered_since(self, records: list[WorkerRecord], now: int) -> list[WorkerRecord]:
        """``records``, those of live workers that had not registered with RQ at their last
        beat read again from their registration: a worker that has just started listening
        serves its pools now, not at its next beat (``interval_s`` later)."""
        starting = [i for i, record in enumerate(records) if record.live(now) and not record.pools]
        if not starting:
            return records
        with self.redis.pipeline(transaction=False) as pipe:
            for i in starting:
                pipe.hmget(f"rq:worker:{records[i].name}", ["queues", "death"])
            found = pipe.execute()
        records = list(records)
        for i, (queues, death) in zip(starting, found, strict=True):
            if queues and not death:
                pools = pools_of(self.settings, as_text(queues).split(","))
                records[i] = replace(records[i], pools=pools)
        return records


def _ms(clock: tuple[int, int]) -> int:
    """Redis ``TIME`` (seconds, microseconds) in ms."""
    seconds, micros = clock
    return int(seconds) * 1000 + int(micros) // 1000
