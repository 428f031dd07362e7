"""The HTTP service put together: routes (``bot.serve.app``) on a server (``bot.serve.server``),
with Slack HTTP mode when a Slack runtime is given, and the order things start and stop in.

Used by ``proofroom serve`` and by ``proofroom slack --http`` (the same service, Slack
required), by the tests and by ``bench/ack.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import redis as redis_lib
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute

from bot.serve.app import build_asgi
from bot.serve.health import catalog_pools
from bot.serve.metrics import registry
from bot.serve.server import HttpServer
from bot.serve.state import ServeState
from engine.metrics import RENDER_SECONDS
from engine.settings import Settings

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.serve.slack import SlackEndpoint

log = logging.getLogger(__name__)


class SlackRuntimeLike(Protocol):
    """What the service needs of ``bot.adapters.slack.cli.SlackRuntime``."""

    app: App

    def start_pump(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


class HttpService:
    """One HTTP service: ``/healthz``, ``/readyz``, ``/metrics``, Slack's path when
    ``slack`` is given, and ``routes``. Bound (and queueing connections) once made."""

    def __init__(
        self,
        *,
        settings: Settings,
        redis: redis_lib.Redis,
        host: str,
        port: int,
        slack: SlackRuntimeLike | None = None,
        slack_path: str = "/slack/events",
        worker_in_process: bool = False,
        known_pools: Callable[[], Iterable[str]] | None = None,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        """``worker_in_process``: a worker renders in this process (the embedded default), so
        ``/metrics`` shows its render histogram too. ``known_pools``: the pools ``/readyz``
        names without jobs (default: the catalog's, ``bot.serve.health.catalog_pools``)."""
        state = ServeState(redis=redis, settings=settings)
        collectors: list[Collector] = [RENDER_SECONDS] if worker_in_process else []
        self.runtime = slack
        self.slack: SlackEndpoint | None = None
        if slack is not None:
            # Only with Slack: the service runs without the slack extra installed.
            from bot.serve.slack import SlackEndpoint  # noqa: PLC0415

            self.slack = SlackEndpoint(slack.app, path=slack_path)
        app = build_asgi(
            state=state,
            metrics=registry(state, extra=collectors),
            known_pools=known_pools or catalog_pools(settings),
            slack=self.slack,
            routes=routes,
        )
        self.server = HttpServer(app, host=host, port=port)
        self._pumping = False

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return self.server.url

    @property
    def slack_url(self) -> str | None:
        """Where Slack posts (as bound), when Slack HTTP mode is on."""
        return self.url + self.slack.path if self.slack is not None else None

    def start(self, *, pump: bool = True) -> HttpService:
        """Serve (and with ``pump``, pump job events) in daemon threads; returns once
        serving."""
        if pump:
            self._start_pump()
        self.server.start()
        return self

    def serve_forever(self) -> None:
        """Pump job events and serve until SIGINT/SIGTERM (in the main thread), then stop:
        the requests in flight are answered and the work they started is finished."""
        self._start_pump()
        log.info("serving on %s (/healthz, /readyz, /metrics)", self.url)
        if self.slack_url is not None:
            log.info("Slack HTTP mode on %s", self.slack_url)
        try:
            self.server.serve_forever()
        except KeyboardInterrupt:  # a signal between two of uvicorn's handlers
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Stop serving, then finish acknowledged work and stop the pump."""
        self.server.stop()
        if self.slack is not None:
            self.slack.close()
        if self.runtime is not None:
            self.runtime.stop()
        log.info("stopped serving on %s", self.url)

    def _start_pump(self) -> None:
        if self.runtime is not None and not self._pumping:
            self._pumping = True
            self.runtime.start_pump()
