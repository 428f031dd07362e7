"""Whether a job's model has a worker: queued, queued with a word that it waits, or refused.

A model renders on the workers of its pool (``pool:`` in models.yaml, else its family; see
``engine.pools``), which say so in their heartbeats. Before a job is queued the bot looks:

- a live worker serves the pool: queued, nothing to add;
- none does now, but one did within the grace window (``PROOFROOM_POOL_GRACE_S``: a worker
  restarting, a heartbeat late), or this bot started less than that long ago (its workers
  may be starting with it, so a bot started before its workers refuses nothing): queued, and
  the reply says it is waiting for a worker that serves the pool;
- otherwise: refused at once with a sentence naming the model, the pool and the command that
  starts a worker for it. Nothing is queued, no thread is opened.

The bot's age is measured on this process's monotonic clock, a pool's on Redis's (the clock of
the heartbeats); tests inject the first (``clock``, ``started``) and write old beats for the
second. The embedded default builds no routing (:func:`routing_for`): its worker, in the same
process, serves every pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import redis as redis_lib

from bot import texts
from engine.catalog import Catalog
from engine.errors import UserError
from engine.pools import PoolDirectory, PoolStatus
from engine.settings import Settings


class NoWorkerError(UserError):
    """A job for a pool that no worker has served within the grace window."""

    kind = "no_worker"

    def __init__(self, message: str, *, model: str, pool: str) -> None:
        super().__init__(message)
        self.model = model
        self.pool = pool


class Routing:
    """The check before queueing (see the module docstring); built once per bot."""

    def __init__(
        self,
        *,
        directory: PoolDirectory,
        catalog: Catalog,
        grace_s: float,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        self.directory = directory
        self.catalog = catalog
        self.grace_s = grace_s
        self.clock = clock
        self.started = clock() if started is None else started

    def check(self, models: Iterable[str]) -> str | None:
        """Before queueing jobs on ``models`` (catalog names, checked by the resolver): the
        sentence saying which pools they wait for, ``None`` when every pool has a live
        worker; :class:`NoWorkerError` (for the first such model) when one has had none
        within the grace window. One round trip to Redis for all of them."""
        by_pool: dict[str, str] = {}
        for name in dict.fromkeys(models):
            by_pool.setdefault(self.catalog.model(name).pool, name)
        if not by_pool:
            return None
        statuses = self.directory.statuses(by_pool)
        young = self.clock() - self.started <= self.grace_s
        waiting = []
        for pool, model in by_pool.items():
            status = statuses[pool]
            if status.live:
                continue
            if not young and not status.seen_within(self.grace_s):
                raise NoWorkerError(
                    texts.no_worker(
                        model=model, pool=pool, grace_s=self.grace_s, since_s=status.age_s
                    ),
                    model=model,
                    pool=pool,
                )
            waiting.append(pool)
        return texts.waiting_for_worker(waiting) if waiting else None

    def idle(self, models: Iterable[str]) -> dict[str, str]:
        """Those of ``models`` whose pool no live worker serves now -> that pool (for
        ``/imagine status``: a queued job there waits for a worker)."""
        pools = {name: self.catalog.model(name).pool for name in dict.fromkeys(models)}
        statuses: dict[str, PoolStatus] = self.directory.statuses(pools.values()) if pools else {}
        return {name: pool for name, pool in pools.items() if not statuses[pool].live}


def routing_for(*, redis: redis_lib.Redis, settings: Settings, catalog: Catalog) -> Routing | None:
    """The routing of a bot on ``redis``: ``None`` for the embedded default (no
    ``REDIS_URL``: the worker in this process serves every pool)."""
    if not settings.redis_url:
        return None
    directory = PoolDirectory(redis=redis, settings=settings)
    return Routing(directory=directory, catalog=catalog, grace_s=settings.pool_grace_s)
