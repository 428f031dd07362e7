"""The live workers, as their heartbeats say (``engine.pools``): which serve each family, and
each model's pool. A model whose pool no live worker serves waits, or is refused after the
grace window (``bot.jobs.routing``)."""

from __future__ import annotations

from collections.abc import Iterator

import redis as redis_lib

from bot.doctor.report import Check
from engine.catalog import Catalog
from engine.pools import PoolDirectory, WorkerRecord
from engine.settings import Settings

START_WORKER = "start `proofroom worker` on a GPU host (docker compose up -d worker)"


def worker_checks(
    *, settings: Settings, client: redis_lib.Redis | None, catalog: Catalog | None
) -> Iterator[Check]:
    """A line for the workers overall, then one per family of the catalog's models."""
    if client is None:
        if settings.redis_url:
            yield Check("workers", "skip", "Redis does not answer, so no worker can be seen")
        else:
            yield Check(
                "workers",
                "ok",
                "no REDIS_URL: the chat process renders in a worker thread of its own",
            )
        return
    directory = PoolDirectory(redis=client, settings=settings)
    try:
        live = directory.workers()
    except (redis_lib.RedisError, OSError) as exc:
        yield Check("workers", "fail", f"cannot read the workers' heartbeats ({exc})")
        return
    if not live:
        yield Check("workers", "fail", "no live worker: every job waits", fix=START_WORKER)
        return
    yield Check("workers", "ok", f"{len(live)} live: {', '.join(_who(r) for r in live)}")
    if catalog is None:
        return
    by_model = directory.workers_by_model(catalog)
    for family in sorted({m.family for m in catalog.models.values()}):
        models = [m for m in catalog.models.values() if m.family == family]
        parts, unserved = [], []
        for model in models:
            count = len(by_model.get(model.name, []))
            pool = "" if model.pool == family else f", pool {model.pool}"
            parts.append(f"{model.name} ({count} worker{'s' if count != 1 else ''}{pool})")
            if not count:
                unserved.append(model.pool)
        detail = f"{family}: {', '.join(parts)}"
        if unserved:
            pools = ",".join(sorted(set(unserved)))
            yield Check(
                "workers",
                "warn",
                f"{detail}; jobs for the models without a worker wait, then are refused",
                fix=f"start `proofroom worker --pools {pools}` where they fit",
            )
        else:
            yield Check("workers", "ok", detail)


def _who(record: WorkerRecord) -> str:
    """``name on host (pools sd15, sdxl)``."""
    pools = ", ".join(record.pools) or "still loading"
    return f"{record.name} on {record.host} (pools {pools})"
