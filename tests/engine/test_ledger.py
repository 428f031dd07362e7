"""The usage ledger's engine side: a micro-batched call's seconds split among its jobs by
image count, and the record written once per job id (a re-written job is not counted
twice). Real tiny renders, real Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import time_machine

from engine.ledger import Ledger, split_call_seconds, usage_record
from engine.merging import CallCounters
from engine.render import RenderRequest, render_group
from engine.spec import ImageResult


def test_a_calls_seconds_are_split_by_image_count():
    shares = split_call_seconds(8.0, ["a", "a", "a", "b"])
    assert shares == {"a": 6.0, "b": 2.0}
    assert split_call_seconds(3.0, []) == {}


def test_a_micro_batched_call_charges_each_job_its_share(
    tiny_job, pipeline_cache, artifact_store, catalog
):
    three = tiny_job(prompt="a red mug", count=3, steps=1, seed=10)
    one = tiny_job(prompt="a blue vase", count=1, steps=1, seed=20)
    counters = CallCounters()
    gpu: dict[str, float] = {}
    outcomes = render_group(
        [RenderRequest(three), RenderRequest(one)],
        cache=pipeline_cache,
        store=artifact_store,
        catalog=catalog,
        counters=counters,
        gpu_seconds=gpu,
    )
    assert [len(o.images) for o in outcomes] == [3, 1]
    assert counters.calls == 1, "the four images shared one call"
    assert gpu[three.id] > 0
    assert gpu[three.id] == pytest.approx(3 * gpu[one.id])
    # The call's seconds, all of them (the busy time adds the text encoders' on top).
    assert gpu[three.id] + gpu[one.id] <= counters.busy_s


@time_machine.travel(datetime(2026, 11, 10, 10, 0, tzinfo=UTC), tick=False)
def test_a_job_written_again_replaces_its_record_and_counts_once(tiny_job, redis, key_prefix):
    now = time.time()
    ledger = Ledger(redis=redis, key_prefix=key_prefix, days=1)
    spec = tiny_job(count=3, requested_by="slack:U1", origin={"platform": "slack", "channel": "C1"})
    images = [
        ImageResult(index=i, seed=i, artifact_id=f"a{i}", width=64, height=64) for i in (0, 2)
    ]
    for gpu_s in (1.5, 2.0):  # a retry of the same job
        record, outcomes = usage_record(
            spec, status="done", images=images, gpu_s=gpu_s, queue_wait_s=0.5, ended_at=now
        )
        ledger.write(record, outcomes)
    entry = ledger.entry(spec.id)
    assert entry is not None
    assert entry.record.gpu_s == 2.0 and entry.record.images == 2
    assert entry.outcomes == {0: "pending", 1: "failed", 2: "pending"}
    assert ledger.totals() == {"jobs": 1.0, "images": 2.0, "gpu_s": 2.0}
    assert [e.record.job_id for e in ledger.between(now - 1, now + 1)] == [spec.id]
    assert ledger.between(now + 0.5, now + 100) == []
    assert ledger.set_outcome(spec.id, 0, "approved")
    assert not ledger.set_outcome("nojob", 0, "approved")
    assert ledger.entry(spec.id).count("approved") == 1
    assert 0 < redis.ttl(ledger.job_key(spec.id)) <= 86400


def test_a_failed_jobs_images_failed_and_a_calendars_job_is_the_calendars(tiny_job):
    spec = tiny_job(
        count=2,
        requested_by="slack:calendar",
        origin={"platform": "slack", "channel": "C1", "calendar": "mkt", "week": "2026-W49"},
    )
    record, outcomes = usage_record(
        spec, status="failed", gpu_s=0.7, queue_wait_s=-0.2, ended_at=5.0
    )
    assert outcomes == {0: "failed", 1: "failed"}
    assert (record.user, record.calendar, record.images, record.gpu_s) == (
        "calendar:mkt",
        "mkt",
        0,
        0.7,
    )
    assert record.queue_wait_s == 0.0  # clocks of two hosts: never a negative wait
