"""``/metrics`` of ``proofroom serve`` reports the usage ledger's totals: images, GPU
seconds, and their cost here and in the cloud at the configured rates. A real HTTP
service on a real Redis; a job written twice is counted once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib

from bot.serve.service import HttpService
from engine.ledger import Ledger, usage_record
from engine.settings import Settings
from engine.spec import ImageResult
from tests.bot.serve.conftest import get, samples
from tests.engine.jobs_fixtures import tiny_spec


@pytest.fixture()
def service(settings: Settings, redis: redis_lib.Redis) -> Iterator[HttpService]:
    rated = settings.model_copy(update={"gpu_hour_cost": 0.36, "cloud_price_per_image": 0.01})
    served = HttpService(
        settings=rated, redis=redis, host="127.0.0.1", port=0, known_pools=frozenset
    ).start()
    yield served
    served.close()


def test_metrics_report_the_ledgers_images_gpu_seconds_and_cost(
    service: HttpService, settings: Settings, redis: redis_lib.Redis
) -> None:
    ledger = Ledger(redis=redis, key_prefix=settings.key_prefix)
    for count, gpu_s in ((2, 10.0), (3, 20.0)):
        spec = tiny_spec(count=count)
        images = [
            ImageResult(index=i, seed=i, artifact_id=f"a{i}", width=64, height=64)
            for i in range(count)
        ]
        for _ in range(2):  # written again (a retry): counted once
            ledger.write(
                *usage_record(
                    spec, status="done", images=images, gpu_s=gpu_s, queue_wait_s=0.0, ended_at=0.0
                )
            )
    metrics = samples(get(service.url + "/metrics").body)
    assert metrics[("proofroom_usage_images_total", ())] == 5
    assert metrics[("proofroom_usage_gpu_seconds_total", ())] == 30.0
    assert metrics[("proofroom_usage_cost", (("where", "here"),))] == pytest.approx(
        30 * 0.36 / 3600
    )
    assert metrics[("proofroom_usage_cost", (("where", "cloud"),))] == pytest.approx(0.05)
