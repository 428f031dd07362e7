"""Worker pools without rendering: a model's pool, the queues it names, what a worker serves,
and what heartbeats tell the readers (``engine.pools``). Real Redis; the workers here are
real RQ workers registered in this process, beating through the real ``Heartbeat``."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
import redis as redis_lib
from rq.job import Job
from rq.serializers import JSONSerializer

from engine.catalog import Catalog, ModelEntry
from engine.pools import (
    PRUNE_AFTER_MS,
    PoolDirectory,
    WorkerRecord,
    known_pools,
    served_pools,
)
from engine.queue import JobQueue, parse_queue_name, queue_name, rq_job_id
from engine.recovery import Heartbeat, RecoveryConfig
from engine.settings import Settings
from engine.worker import ProofroomWorker, make_worker
from tests.engine.jobs_fixtures import tiny_spec
from tests.engine.pool_fixtures import pool_templates, with_pools


@pytest.fixture()
def pooled(settings: Settings, tmp_path: Path) -> Settings:
    return with_pools(settings, tmp_path / "templates")


@pytest.fixture()
def catalog(pooled: Settings) -> Catalog:
    return Catalog.load(pooled.templates_dir)


def registered(settings: Settings, redis: redis_lib.Redis, **serves) -> ProofroomWorker:
    """A worker registered with RQ, as ``proofroom worker`` is once its model is warm."""
    worker = make_worker(settings=settings, redis=redis, **serves)
    worker.register_birth()
    return worker


# -- the catalog and the queues ------------------------------------------------------------


def test_a_model_is_in_its_familys_pool_unless_models_yaml_names_one(catalog, tmp_path):
    assert catalog.model("tiny").pool == "sd15"
    assert catalog.model("tiny-turbo").pool == "turbo"

    bad = pool_templates(tmp_path / "bad")
    text = (bad / "models.yaml").read_text().replace("pool: turbo", "pool: Turbo XL")
    (bad / "models.yaml").write_text(text)
    with pytest.raises(ValueError, match="pool name 'Turbo XL' is not valid"):
        Catalog.load(bad)

    # A YAML entry over a file found in a drop-in folder: the found file's pool was only its
    # family's default, so a new family in the YAML moves it to that family's pool.
    found = ModelEntry(name="drop", source="/models/drop.safetensors", family="sd15")
    (bad / "models.yaml").write_text("drop:\n  family: sd2\n")
    loaded = Catalog.load(bad, found=Catalog(templates={}, models={"drop": found}, loras={}))
    assert loaded.model("drop").pool == "sd2"


def test_a_worker_serves_its_families_and_pools_together_or_every_pool(catalog, caplog):
    assert known_pools(catalog) == ["sd15", "sd2", "sdxl", "turbo"]
    assert served_pools(catalog=catalog) == ["sd15", "sd2", "sdxl", "turbo"]
    assert served_pools(catalog=catalog, families=["sdxl"], pools=["turbo", "sdxl"]) == [
        "sdxl",
        "turbo",
    ]
    with pytest.raises(ValueError, match="unknown model family sd3; known: sd15, sd2, sdxl"):
        served_pools(catalog=catalog, families=["sd3"])
    with pytest.raises(ValueError, match="not valid"):
        served_pools(catalog=catalog, pools=["turbo,xl"])
    # A pool no model names yet is served (models.yaml may name it later), with a warning.
    with caplog.at_level(logging.WARNING, logger="engine.pools"):
        assert served_pools(catalog=catalog, pools=["lcm"]) == ["lcm"]
    assert "no model of the catalog is in pool lcm yet" in caplog.text


def test_queue_names_read_back_with_dashes_in_the_prefix_and_the_pool(settings):
    team = settings.model_copy(update={"key_prefix": "team-a:b"})
    name = queue_name(team, "bulk", "fast-xl")
    assert name == "team-a-b-bulk-fast-xl"
    assert parse_queue_name(team, name) == ("bulk", "fast-xl")
    assert parse_queue_name(team, "team-a-b-urgent-sd15") is None
    assert parse_queue_name(team, "other-bulk-sd15") is None


def test_jobs_go_to_their_models_pool_and_wait_in_its_own_line(pooled, catalog, redis):
    queue = JobQueue(redis=redis, settings=pooled, catalog=catalog)
    turbo = queue.enqueue(tiny_spec(model="tiny-turbo"))
    sd15 = [queue.enqueue(tiny_spec(model="tiny")) for _ in range(2)]
    later = queue.enqueue(tiny_spec(model="tiny-turbo", priority="bulk"))

    job = Job.fetch(rq_job_id(pooled, turbo), connection=redis, serializer=JSONSerializer)
    assert job.origin == queue_name(pooled, "interactive", "turbo")
    # Each pool is its own line: the sd15 jobs are not ahead of the turbo ones.
    assert queue.position(turbo) == 1
    assert queue.position(later) == 2
    assert [queue.position(job_id) for job_id in sd15] == [1, 2]


def test_make_worker_listens_on_the_pools_it_is_given(pooled, redis):
    prefix = pooled.key_prefix
    worker = make_worker(settings=pooled, redis=redis, families=["sd15"], pools=["turbo"])
    assert worker.queue_names() == [
        f"{prefix}-interactive-sd15",
        f"{prefix}-interactive-turbo",
        f"{prefix}-bulk-sd15",
        f"{prefix}-bulk-turbo",
    ]
    every = make_worker(settings=pooled, redis=redis)
    assert f"{prefix}-interactive-turbo" in every.queue_names()
    assert f"{prefix}-bulk-sdxl" in every.queue_names()


# -- heartbeats and their readers ----------------------------------------------------------


def test_a_heartbeat_records_the_pools_its_worker_registered(pooled, redis):
    directory = PoolDirectory(redis=redis, settings=pooled)
    worker = make_worker(settings=pooled, redis=redis, pools=["turbo"])
    heartbeat = Heartbeat(
        redis=redis, settings=pooled, worker_name=worker.name, config=RecoveryConfig()
    )

    heartbeat.beat()  # still loading its model: not listening yet
    [record] = directory.workers()
    assert (record.name, record.pools) == (worker.name, ())
    assert (record.host, record.pid, record.ttl_ms) == (socket.gethostname(), os.getpid(), 15000)
    assert directory.live_pools() == set() and directory.last_seen("turbo") is None

    # Listening: it serves its pool from now on, not from its next beat.
    worker.register_birth()
    assert [r.pools for r in directory.workers()] == [("turbo",)]
    assert directory.live_pools() == {"turbo"} and directory.last_seen("turbo") is None
    heartbeat.beat()
    [record] = directory.workers()
    assert record.pools == ("turbo",)
    assert directory.live_pools() == {"turbo"}
    status = directory.status("turbo")
    assert status.live and status.workers == (worker.name,)
    assert 0 <= directory.now_ms() - directory.last_seen("turbo") < 5000
    assert not directory.status("sd15").live and directory.status("sd15").last_seen_ms is None

    # A clean stop: no longer live, but the pool was seen a moment ago (a restart fits in).
    heartbeat.stop()
    assert directory.workers() == [] and directory.live_pools() == set()
    gone = directory.status("turbo")
    assert not gone.live and gone.seen_within(60) and not gone.seen_within(-1)
    assert set(directory.seen()) == {"turbo"}


def test_a_worker_that_registered_its_death_serves_nothing_on_its_last_beats(pooled, redis):
    directory = PoolDirectory(redis=redis, settings=pooled)
    worker = registered(pooled, redis, pools=["turbo"])
    directory.record_beat(worker=worker.name, ttl_s=15)
    worker.register_death()
    record = directory.record_beat(worker=worker.name, ttl_s=15)
    assert record.pools == () and directory.live_pools() == set()


def test_records_past_their_ttl_are_not_live_and_long_dead_ones_are_dropped(pooled, redis):
    directory = PoolDirectory(redis=redis, settings=pooled)
    now = directory.now_ms()

    def store(name: str, *, age_ms: int) -> None:
        record = WorkerRecord(
            name=name, pools=("turbo",), host="h", pid=1, beat_ms=now - age_ms, ttl_ms=15000
        )
        redis.hset(directory.workers_key, name, record.to_json())

    store("late", age_ms=20_000)  # missed its TTL: dead, but still listed for an hour
    store("ancient", age_ms=PRUNE_AFTER_MS + 60_000)
    redis.hset(directory.workers_key, "garbled", b"{not json")

    assert directory.workers() == [] and not directory.status("turbo").live
    left = {k.decode() for k in redis.hkeys(directory.workers_key)}
    assert left == {"late"}


def test_the_catalog_views_list_live_workers_per_model_and_family_and_idle_pools(
    pooled, catalog, redis
):
    directory = PoolDirectory(redis=redis, settings=pooled)
    assert directory.idle_pools(catalog) == ["sd15", "turbo"]

    turbo = registered(pooled, redis, pools=["turbo"])
    directory.record_beat(worker=turbo.name, ttl_s=15)

    assert directory.idle_pools(catalog) == ["sd15"]
    by_model = directory.workers_by_model(catalog)
    assert [r.name for r in by_model["tiny-turbo"]] == [turbo.name]
    assert by_model["tiny"] == []
    by_family = directory.workers_by_family(catalog)
    assert [r.name for r in by_family["sd15"]] == [turbo.name]  # tiny-turbo is an sd15 model
    assert by_family["sdxl"] == []
