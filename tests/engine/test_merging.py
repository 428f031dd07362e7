"""Which jobs share a pipeline call (``engine.merging``), and how a worker claims them off
the queues (``engine.companions``): on a real Redis and on the embedded in-memory one."""

from __future__ import annotations

import pytest

from engine.catalog import ModelEntry
from engine.companions import claim
from engine.merging import companions, max_batch, merge_key, plan_calls
from engine.queue import JobQueue
from engine.recovery import requeue
from engine.spec import LoraRef, Mode
from engine.tasks import running_key
from tests.engine.jobs_fixtures import settings_and_redis, tiny_spec, wipe


def test_jobs_that_differ_only_in_prompt_seed_count_and_person_share_a_key() -> None:
    base = tiny_spec(loras=[LoraRef(name="a", weight=0.5), LoraRef(name="b", weight=1.0)])
    same = tiny_spec(
        prompt="another prompt",
        negative_prompt="blurry",
        seed=99,
        count=3,
        requested_by="U2",
        priority="bulk",
        loras=[LoraRef(name="b", weight=1.0), LoraRef(name="a", weight=0.5)],
    )
    assert merge_key(base) == merge_key(same) is not None


@pytest.mark.parametrize(
    "change",
    [
        {"model": "tiny-xl"},
        {"loras": [LoraRef(name="a", weight=0.6), LoraRef(name="b", weight=1.0)]},
        {"loras": [LoraRef(name="a", weight=0.5)]},
        {"width": 128},
        {"height": 128},
        {"steps": 9},
        {"sampler": "Heun"},
        {"cfg_scale": 3.0},
    ],
)
def test_any_other_difference_keeps_jobs_apart(change: dict) -> None:
    loras = [LoraRef(name="a", weight=0.5), LoraRef(name="b", weight=1.0)]
    base = tiny_spec(loras=loras)
    assert merge_key(base) != merge_key(tiny_spec(**{"loras": loras, **change}))


def test_jobs_with_input_images_are_never_merged() -> None:
    spec = tiny_spec(mode=Mode.img2img, init_image="a.png")
    assert merge_key(spec) is None
    assert companions(spec, [("x", tiny_spec())], cap=8) == []


def test_companions_fill_the_cap_in_candidate_order_with_whole_jobs() -> None:
    leader = tiny_spec(count=3)
    candidates = [
        ("big", tiny_spec(count=6)),  # does not fit: 3 + 6 > 8
        ("other", tiny_spec(width=128)),  # not compatible
        ("a", tiny_spec(count=2)),
        ("b", tiny_spec(count=2)),
        ("c", tiny_spec(count=1)),  # 3 + 2 + 2 + 1: the cap
        ("d", tiny_spec(count=1)),  # beyond it
    ]
    assert [item for item, _ in companions(leader, candidates, cap=8)] == ["a", "b", "c"]
    assert companions(tiny_spec(count=8), candidates, cap=8) == []


def test_max_batch_is_the_models_else_its_familys_at_most_four_on_a_cpu() -> None:
    sdxl = ModelEntry(name="m", source="x", family="sdxl")
    sd15 = sdxl.model_copy(update={"family": "sd15"})
    assert max_batch(sdxl, device="cuda") == 4
    assert max_batch(sd15, device="cuda:1") == 8
    assert max_batch(sd15, device="cpu") == 4
    assert max_batch(sd15.model_copy(update={"max_batch": 6}), device="cpu") == 6


def test_calls_are_planned_in_image_order_within_the_cap() -> None:
    assert plan_calls([5], cap=2) == [[(0, 0), (0, 1)], [(0, 2), (0, 3)], [(0, 4)]]
    assert plan_calls([2, 1], cap=8) == [[(0, 0), (0, 1), (1, 0)]]


@pytest.fixture(params=["redis", "fakeredis"])
def queue(request, tmp_path, key_prefix):
    settings, client = settings_and_redis(request, tmp_path=tmp_path, prefix=key_prefix)
    yield JobQueue(redis=client, settings=settings)
    wipe(client, key_prefix)


def test_a_job_is_claimed_by_one_worker_only(queue: JobQueue) -> None:
    leader, *others = [tiny_spec(prompt=f"p{k}") for k in range(3)]
    for spec in (leader, *others):
        queue.enqueue(spec)
    claims = {
        worker: claim(
            redis=queue.redis,
            settings=queue.settings,
            catalog=queue.catalog,
            leader=leader,
            worker_name=worker,
            device="cpu",
        )
        for worker in ("w1", "w2")
    }

    assert [m.spec.id for m in claims["w1"]] == [s.id for s in others]
    assert claims["w2"] == []
    running = queue.redis.hgetall(running_key(queue.settings))
    assert running == {s.id.encode(): b"w1" for s in others}  # a crash now gives them back
    assert queue.position(leader.id) == 1 and queue.position(others[0].id) is None


def test_a_claimed_job_not_yet_started_goes_back_to_the_front(queue: JobQueue) -> None:
    leader, other, last = [tiny_spec(prompt=f"p{k}", count=2) for k in range(3)]
    for spec in (leader, other, last):
        queue.enqueue(spec)
    [member] = claim(
        redis=queue.redis,
        settings=queue.settings,
        catalog=queue.catalog,
        leader=leader,
        worker_name="w1",
        device="cpu",
    )
    assert member.spec.id == other.id  # 2 + 2 fill a CPU's cap of 4: `last` stays

    assert requeue(redis=queue.redis, settings=queue.settings, job_id=other.id, spend_retry=True)
    assert queue.position(other.id) == 1
    # Not claimed, not started: nothing to give back.
    assert not requeue(redis=queue.redis, settings=queue.settings, job_id=last.id, spend_retry=True)
