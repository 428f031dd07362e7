"""``proofroom serve``: the one HTTP service. ``/healthz``, ``/readyz`` and ``/metrics``
always; Slack HTTP mode on ``PROOFROOM_SLACK_HTTP_PATH`` (``/slack/events``) when
``SLACK_SIGNING_SECRET`` is set (with ``SLACK_BOT_TOKEN``), together with the loop that posts
job events into Slack threads. Without ``REDIS_URL`` it renders in this process too, as
``proofroom slack`` does. The HTTP API for applications (``bot.api``, ``docs/api.md``) is
served always. SIGTERM or Ctrl-C: the requests in flight are answered and the work they
started is finished before the process exits. See ``docs/deploy.md``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

import redis as redis_lib

from bot.serve.service import HttpService
from bot.settings import BotSettings
from engine.embedded import chat_redis_or_none, worker_if_needed
from engine.settings import Settings, get_settings

if TYPE_CHECKING:
    from bot.adapters.slack.cli import SlackRuntime

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``proofroom serve``."""
    parser.add_argument(
        "--host", help="address to listen on (default PROOFROOM_SERVE_HOST, 0.0.0.0)"
    )
    parser.add_argument("--port", type=int, help="port (default PROOFROOM_SERVE_PORT, 3000)")
    parser.add_argument(
        "--embedded-worker",
        action="store_true",
        help="also render in this process (automatic without REDIS_URL)",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``proofroom serve``."""
    try:
        import starlette  # noqa: F401, PLC0415
        import uvicorn  # noqa: F401, PLC0415
    except ImportError:
        print(
            "proofroom serve needs the `serve` extra: pip install 'proofroom[serve]'",
            file=sys.stderr,
        )
        return 2
    from bot.api.routes import build_api_routes  # noqa: PLC0415 (needs the serve extra)

    settings = get_settings()
    bot_settings = BotSettings()
    host = args.host or bot_settings.serve_host
    port = bot_settings.serve_port if args.port is None else args.port
    store = chat_redis_or_none(settings)  # REDIS_URL, the data folder's redis-server, or memory
    if store is None:
        return 2
    redis = store.client
    slack = _slack(settings=settings, bot_settings=bot_settings, redis=redis)
    if isinstance(slack, int):
        store.close()
        return slack
    runtime, path = slack
    with (
        store,
        worker_if_needed(settings=settings, redis=redis, wanted=args.embedded_worker) as worker,
    ):
        service = HttpService(
            settings=settings,
            redis=redis,
            host=host,
            port=port,
            slack=runtime,
            slack_path=path,
            worker_in_process=worker is not None,
            # The HTTP API for applications (bot.api, docs/api.md): keys in the same Redis.
            routes=build_api_routes(settings=settings, bot_settings=bot_settings, redis=redis),
        )
        service.serve_forever()
    return 0


def _slack(
    *, settings: Settings, bot_settings: BotSettings, redis: redis_lib.Redis
) -> tuple[SlackRuntime | None, str] | int:
    """The Slack runtime and its path when Slack HTTP mode is configured, (None, path) when
    it is not, or an exit status after saying what is wrong."""
    try:  # the chat SDK only where Slack is installed
        from bot.adapters.slack.cli import SlackRuntime, connection_problem  # noqa: PLC0415
        from bot.adapters.slack.settings import SlackSettings  # noqa: PLC0415
    except ImportError:
        log.info("Slack HTTP mode off: the `slack` extra is not installed")
        return None, ""
    slack_settings = SlackSettings()
    path = slack_settings.http_path
    if slack_settings.signing_secret is None:
        log.info("Slack HTTP mode off: SLACK_SIGNING_SECRET is not set")
        return None, path
    try:
        slack_settings.secret("bot_token")
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    problem = connection_problem(slack_settings, socket_mode=False)
    if problem is not None:
        log.error("%s", problem)
        return 2
    runtime = SlackRuntime(
        settings=settings,
        slack_settings=slack_settings,
        bot_settings=bot_settings,
        redis=redis,
        socket_mode=False,
    )
    return runtime, path
