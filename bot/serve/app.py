"""The ASGI application of ``proofroom serve`` (Starlette): the routes, nothing about how they
are served (``bot.serve.server``).

- ``GET /healthz``: 200 ``ok`` while the process serves (alive; it reads nothing).
- ``GET /readyz``: 200 when Redis answers and a worker is alive, else 503; JSON body with
  the live workers, workers by pool, the pools without one and what is missing
  (``bot.serve.health``).
- ``GET /metrics``: Prometheus text (``bot.serve.metrics``).
- ``POST {slack path}``: Slack HTTP mode, when the service was given a Slack endpoint
  (``bot.serve.slack``).
- Any ``routes`` a caller adds (the HTTP API).

``/readyz`` and ``/metrics`` call Redis with a blocking client: they are plain functions,
which Starlette runs on its thread pool, so a slow Redis never holds the event loop that
acknowledges Slack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot.serve.health import readiness
from bot.serve.state import ServeState

if TYPE_CHECKING:
    from bot.serve.slack import SlackEndpoint


def build_asgi(
    *,
    state: ServeState,
    metrics: CollectorRegistry,
    known_pools: Callable[[], Iterable[str]] = frozenset,
    slack: SlackEndpoint | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The service's routes over ``state`` (Redis) and the ``metrics`` registry;
    ``known_pools``: the pools ``/readyz`` names even before they have jobs."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    def readyz(request: Request) -> Response:
        answer = readiness(state, known_pools=known_pools())
        return JSONResponse(answer.body, status_code=200 if answer.ready else 503)

    def metrics_text(request: Request) -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    table: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]
    if slack is not None:
        table.append(Route(slack.path, slack.handle, methods=["POST"]))
    return Starlette(routes=[*table, *routes])
