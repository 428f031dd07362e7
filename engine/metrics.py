"""What a worker measures in its own process, for Prometheus: how long each render takes.

``proofroom worker --metrics-port N`` (or ``PROOFROOM_WORKER_METRICS_PORT``) serves
:data:`REGISTRY` on ``http://<host>:N/metrics``. Everything else the deployment is watched by
(queue depths, jobs by outcome, reviews, event-stream lag) is read from Redis at scrape time
by ``proofroom serve`` (``bot/serve/metrics.py``), so that any replica reports the same
numbers; only what happens inside a worker's pipeline calls is measured here.

- ``proofroom_render_seconds{model}``: a histogram of the seconds one group render took
  (``engine.tasks._render``: the jobs that share pipeline calls, loading the model if it was
  not warm, the calls, storing the PNGs), failed renders included.

The registry is this module's own, not ``prometheus_client``'s global one, so that a process
that runs a worker in a thread (``proofroom serve`` without ``REDIS_URL``) can add the
histogram to its own ``/metrics`` without serving anything twice. No torch here.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # memory and CPU of the worker process

# From a turbo model's one step at 64x64 to an SDXL batch of eight at 60 steps on a small GPU.
RENDER_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

RENDER_SECONDS = Histogram(
    "proofroom_render_seconds",
    "Seconds one group render took (jobs sharing pipeline calls), by model",
    ["model"],
    buckets=RENDER_BUCKETS,
    registry=REGISTRY,
)


def observe_render(*, model: str, seconds: float) -> None:
    """Count one group render of ``model`` that took ``seconds``."""
    RENDER_SECONDS.labels(model=model).observe(seconds)


class MetricsServer:
    """The worker's ``/metrics`` endpoint in a daemon thread; :meth:`stop` closes it."""

    def __init__(self, *, port: int, host: str = "0.0.0.0") -> None:
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, addr=host, registry=REGISTRY)
        self.port = int(self._server.server_address[1])
        log.info("worker metrics on http://%s:%d/metrics", host, self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
