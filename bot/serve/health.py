"""``/readyz``: whether this deployment can take a job now, and what is missing if not.

Ready means Redis answers ``PING`` and at least one worker is alive (its heartbeat is fresh,
``engine.pools``), also one still loading its first model. The answer also lists the pools
that have no live worker: every pool the catalog knows (the families, and the ``pool:``
names of models.yaml) and any whose queues hold jobs; jobs of a pool without a worker wait
until one starts. Such a pool does not make the service unready (a deployment may leave
SDXL out on purpose): it is named, so that an operator sees why a job waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib

from bot.serve.state import ServeState
from engine.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    """The answer of ``/readyz``: ``ready`` (200) or not (503), and the JSON body."""

    ready: bool
    body: dict[str, Any] = field(default_factory=dict)


def readiness(state: ServeState, *, known_pools: Iterable[str]) -> Readiness:
    """Check Redis and the live workers; never raises."""
    try:
        state.ping()
        workers = state.live_workers()
        depths = state.queue_depths()
    except redis_lib.RedisError as exc:
        return Readiness(
            ready=False,
            body={
                "ready": False,
                "redis": f"unreachable: {exc}",
                "missing": ["Redis does not answer; check REDIS_URL and that Redis runs"],
            },
        )
    listening: dict[str, set[str]] = {}
    for name, served in workers.items():
        for pool in served:
            listening.setdefault(pool, set()).add(name)
    waiting = {state.pool_of(q) for q, depth in depths.items() if depth}
    pools = sorted({*known_pools, *listening, *(p for p in waiting if p)})
    missing = []
    if not workers:
        missing.append("no live worker: start `proofroom worker` against this Redis")
    return Readiness(
        ready=not missing,
        body={
            "ready": not missing,
            "redis": "ok",
            "live_workers": sorted(workers),
            "workers_by_pool": {pool: len(listening.get(pool, ())) for pool in pools},
            "pools_without_worker": [pool for pool in pools if not listening.get(pool)],
            "missing": missing,
        },
    )


def catalog_pools(settings: Settings) -> Callable[[], frozenset[str]]:
    """Every pool the catalog knows (``engine.pools.known_pools``: the families and the
    pools models.yaml names), read once on first use; none when the catalog cannot be read
    (the reason is logged: ``/readyz`` still answers)."""
    known: list[frozenset[str]] = []

    def pools() -> frozenset[str]:
        if not known:
            from engine.model_folders import load_catalog  # noqa: PLC0415 (scans folders)
            from engine.pools import known_pools  # noqa: PLC0415

            try:
                known.append(frozenset(known_pools(load_catalog(settings))))
            except Exception:
                log.exception("cannot read the catalog; /readyz lists only pools with jobs")
                known.append(frozenset())
        return known[0]

    return pools
