"""A batch is queued whole or not at all (``bot.batch.plan.enqueue_all``, used by chat and
the CLI), on the real queue."""

from __future__ import annotations

import pytest
import redis as redis_lib

from bot.batch.plan import PlannedRow, enqueue_all, parse_batch_command, plan_batch
from bot.jobs.resolve import JobResolver
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.queue import JobQueue
from engine.settings import Settings
from tests.bot.conftest import queued_jobs


def plan(settings: Settings, data: bytes) -> tuple[Catalog, list[PlannedRow]]:
    """The rows of ``data`` planned as the chat and the CLI plan them (template
    product-photo, two steps)."""
    catalog = Catalog.load(settings.templates_dir)
    request, variations = parse_batch_command(
        "product-photo --steps 2",
        catalog=catalog,
        max_prompt_chars=settings.limits.max_prompt_chars,
    )
    resolver = JobResolver(
        catalog=catalog, settings=settings, bot_settings=BotSettings(_env_file=None)
    )
    planned = plan_batch(
        data, request, variations=variations, resolver=resolver, max_rows=500, requested_by="cli"
    )
    return catalog, planned


def test_when_one_row_cannot_be_queued_the_rows_already_queued_are_cancelled(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    catalog, planned = plan(settings, b"product\nmug\nlamp\nchair\n")
    queue = JobQueue(redis=redis, settings=settings, catalog=catalog)
    queued: list[str] = []

    def submit(spec) -> str:
        if len(queued) == 2:
            raise ConnectionError("Redis went away")
        queued.append(queue.enqueue(spec))
        return queued[-1]

    with pytest.raises(ConnectionError):
        enqueue_all(planned, batch_id="b1", submit=submit, cancel=queue.cancel)
    assert len(queued) == 2
    assert queued_jobs(settings, redis) == 0
    assert [queue.status(job_id) for job_id in queued] == ["cancelled", "cancelled"]


def test_each_job_carries_its_batch_row_and_label(settings: Settings, redis) -> None:
    catalog, planned = plan(settings, b"product\nmug\nlamp\n")
    queue = JobQueue(redis=redis, settings=settings, catalog=catalog)
    ids = enqueue_all(planned, batch_id="b2", submit=queue.enqueue, cancel=queue.cancel)
    origins = [queue.spec(job_id).origin for job_id in ids]
    assert [(o["batch"], o["row"]) for o in origins] == [("b2", "2"), ("b2", "3")]
    assert origins[0]["label"].startswith("Row 2")
