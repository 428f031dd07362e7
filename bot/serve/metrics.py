"""``/metrics``: the deployment in Prometheus's text format, read from Redis at scrape time.

A collector, not counters kept in this process: every replica of ``proofroom serve`` reports
the same numbers, and a restart loses none. The counters are kept by whoever changes the
state (``engine.events`` counts each job's one terminal event, ``bot.state`` each review
decision).

==========================================  ======  ==========================================
metric                                      type    what
==========================================  ======  ==========================================
``proofroom_redis_up``                      gauge   1 when Redis answered this scrape, else 0
                                                    (and nothing else is reported)
``proofroom_queue_depth{queue,pool,         gauge   jobs waiting in each RQ queue
priority}``
``proofroom_workers_live``                  gauge   workers with a fresh heartbeat
``proofroom_pool_workers_live{pool}``       gauge   live workers serving the pool
``proofroom_jobs_total{outcome}``           counter jobs ended: done, failed, cancelled
``proofroom_images_reviewed_total           counter images approved and rejected
{decision}``
``proofroom_usage_images_total``            counter images delivered (the usage ledger)
``proofroom_usage_gpu_seconds_total``       counter GPU seconds spent rendering them
``proofroom_usage_cost{where}``             gauge   what that GPU time cost ``here``, and what
                                                    the images would have cost in the ``cloud``,
                                                    at the configured rates (a gauge: a new
                                                    rate changes the past)
``proofroom_event_stream_lag{group}``       gauge   job events a bot's group has not read yet
``proofroom_event_stream_pending{group}``   gauge   job events it read but not acknowledged
==========================================  ======  ==========================================

The render-seconds histogram is measured where renders happen: each worker serves it on its
own port (``engine/metrics.py``); a worker running inside this process adds it here too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import redis as redis_lib
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.serve.state import ServeState
from bot.usage.report import Rates

log = logging.getLogger(__name__)

OUTCOMES = ("done", "failed", "cancelled")
DECISIONS = ("approved", "rejected")


class RedisCollector(Collector):
    """Reads :class:`ServeState` once per scrape."""

    def __init__(self, state: ServeState) -> None:
        self.state = state

    def describe(self) -> Iterable[object]:
        """Nothing up front: registering must not call Redis."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The metrics of the module's table."""
        up = GaugeMetricFamily("proofroom_redis_up", "1 when Redis answered this scrape")
        try:
            snapshot = self.state.snapshot()
        except redis_lib.RedisError as exc:
            log.warning("metrics: Redis does not answer (%s)", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        depth = GaugeMetricFamily(
            "proofroom_queue_depth",
            "Jobs waiting in an RQ queue",
            labels=["queue", "pool", "priority"],
        )
        for queue, count in sorted(snapshot.queue_depths.items()):
            priority, pool = self.state.queue_parts(queue) or ("", "")
            depth.add_metric([queue, pool, priority], count)
        yield depth

        yield GaugeMetricFamily(
            "proofroom_workers_live",
            "Workers with a fresh heartbeat",
            value=len(snapshot.live_workers),
        )
        by_pool = GaugeMetricFamily(
            "proofroom_pool_workers_live",
            "Live workers serving a pool",
            labels=["pool"],
        )
        listening: dict[str, set[str]] = {}
        for name, pools in snapshot.live_workers.items():
            for pool in pools:
                listening.setdefault(pool, set()).add(name)
        for queue in snapshot.queue_depths:  # a pool with jobs and no worker shows as 0
            queued_pool = self.state.pool_of(queue)
            if queued_pool is not None:
                listening.setdefault(queued_pool, set())
        for pool, names in sorted(listening.items()):
            by_pool.add_metric([pool], len(names))
        yield by_pool

        jobs = CounterMetricFamily("proofroom_jobs", "Jobs ended, by outcome", labels=["outcome"])
        for outcome in OUTCOMES:
            jobs.add_metric([outcome], snapshot.outcomes.get(outcome, 0))
        yield jobs

        reviewed = CounterMetricFamily(
            "proofroom_images_reviewed", "Images approved and rejected", labels=["decision"]
        )
        for decision in DECISIONS:
            reviewed.add_metric([decision], snapshot.decisions.get(decision, 0))
        yield reviewed

        yield from _usage(snapshot.usage, Rates.from_settings(self.state.settings))

        lag = GaugeMetricFamily(
            "proofroom_event_stream_lag",
            "Job events a consumer group has not read yet",
            labels=["group"],
        )
        pending = GaugeMetricFamily(
            "proofroom_event_stream_pending",
            "Job events a consumer group read but has not acknowledged",
            labels=["group"],
        )
        for group in snapshot.groups:
            if group.lag is not None:
                lag.add_metric([group.name], group.lag)
            pending.add_metric([group.name], group.pending)
        yield lag
        yield pending


def _usage(
    totals: dict[str, float], rates: Rates
) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """The usage ledger's totals (``engine.ledger``) and their cost."""
    images, gpu_s = totals.get("images", 0.0), totals.get("gpu_s", 0.0)
    yield CounterMetricFamily(
        "proofroom_usage_images", "Images delivered, from the usage ledger", value=images
    )
    yield CounterMetricFamily(
        "proofroom_usage_gpu_seconds",
        "GPU seconds spent rendering, from the usage ledger",
        value=gpu_s,
    )
    cost = GaugeMetricFamily(
        "proofroom_usage_cost",
        f"Cost of the rendering in {rates.currency}: here (GPU time) and at the cloud price",
        labels=["where"],
    )
    cost.add_metric(["here"], gpu_s * rates.gpu_hour_cost / 3600)
    cost.add_metric(["cloud"], images * rates.cloud_price_per_image)
    yield cost


def registry(state: ServeState, *, extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry of the Redis collector and ``extra`` collectors (a worker thread's render
    histogram, ``engine.metrics.RENDER_SECONDS``)."""
    made = CollectorRegistry()
    made.register(RedisCollector(state))
    for collector in extra:
        made.register(collector)
    return made
