"""``proofroom slack``: run the bot on Slack, in Socket Mode (default; app token ``xapp-``)
or in HTTP mode (``--http``; signing secret: the service of ``proofroom serve``, which also
answers ``/healthz``, ``/readyz`` and ``/metrics``). Either way a second thread pumps job
events into threads. See ``docs/slack.md`` for creating the app."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis as redis_lib
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from bot.adapters.slack.adapter import SlackAdapter, make_client
from bot.adapters.slack.app import Core, build_app, work_pool
from bot.adapters.slack.groups import UserGroups
from bot.adapters.slack.settings import SlackSettings
from bot.service import BotService
from bot.settings import BotSettings
from engine.embedded import chat_redis_or_none, worker_if_needed
from engine.settings import Settings, get_settings

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)
# slack_sdk logs each failed try at ERROR; the check says it once, in its own words.
_QUIET = logging.getLogger(f"{__name__}.check")
_QUIET.setLevel(logging.CRITICAL + 1)
# What auth.test answers for a token that is wrong, not just unlucky.
TOKEN_ERRORS = frozenset(
    ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired")
    + ("not_allowed_token_type",)  # an xoxb- token where the xapp- one belongs, or back
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``proofroom slack``."""
    parser.add_argument(
        "--http",
        action="store_true",
        help="HTTP mode: Slack posts to this process (needs SLACK_SIGNING_SECRET and a public "
        "URL); default is Socket Mode (needs SLACK_APP_TOKEN)",
    )
    parser.add_argument("--port", type=int, help="HTTP mode port (default 3000)")
    parser.add_argument("--host", default="0.0.0.0", help="HTTP mode address (default 0.0.0.0)")
    parser.add_argument(
        "--embedded-worker",
        action="store_true",
        help="also render in this process (automatic without REDIS_URL)",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``proofroom slack``."""
    settings = get_settings()
    slack_settings = SlackSettings()
    try:  # name the missing variable before anything starts
        slack_settings.secret("bot_token")
        slack_settings.secret("signing_secret" if args.http else "app_token")
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    problem = connection_problem(slack_settings, socket_mode=not args.http)
    if problem is not None:  # one line, not Bolt's traceback from its own auth.test
        log.error("%s", problem)
        return 2
    store = chat_redis_or_none(settings)  # REDIS_URL, the data folder's redis-server, or memory
    if store is None:
        return 2
    redis = store.client
    runtime = SlackRuntime(
        settings=settings,
        slack_settings=slack_settings,
        bot_settings=BotSettings(),
        redis=redis,
        socket_mode=not args.http,
    )
    with store, worker_if_needed(settings=settings, redis=redis, wanted=args.embedded_worker):
        _serve(runtime, slack_settings=slack_settings, args=args)
    return 0


def connection_problem(settings: SlackSettings, *, socket_mode: bool) -> str | None:
    """None when Slack accepts the bot token (``auth.test``) and, for Socket Mode, the app
    token (``apps.connections.open``; the URL it returns is left to expire). Otherwise one
    sentence naming the variable or the network problem. Connection errors are retried."""
    client = WebClient(
        token=settings.secret("bot_token"),
        base_url=settings.api_url,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2)],
        logger=_QUIET,
    )
    checks: list[tuple[str, Callable[[], object]]] = [
        ("SLACK_BOT_TOKEN (xoxb-...)", client.auth_test)
    ]
    if socket_mode:
        app_token = settings.secret("app_token")
        checks.append(
            (
                "SLACK_APP_TOKEN (xapp-...)",
                lambda: client.apps_connections_open(app_token=app_token),
            )
        )
    for variable, call in checks:
        try:
            call()
        except SlackApiError as exc:
            return api_problem(exc, variable=variable)
        except OSError as exc:  # urllib's URLError: refused, DNS, TLS, timeout
            return (
                f"cannot reach the Slack API at {settings.api_url} "
                f"({getattr(exc, 'reason', exc)}); check the network or proxy, and "
                "PROOFROOM_SLACK_API_URL if it is set"
            )
    return None


def api_problem(exc: SlackApiError, *, variable: str) -> str:
    """A refused Slack API call as one sentence: a wrong token names its variable."""
    response = exc.response  # slack_sdk's SlackResponse: also for a body that is not JSON
    error = str(response.get("error") or "")
    if error in TOKEN_ERRORS:
        return f"Slack refused {variable}: {error}; copy the token again (see docs/slack.md)"
    what = error or f"HTTP {response.status_code} without a Slack answer"
    return f"{response.api_url} answered {what}; check PROOFROOM_SLACK_API_URL (see docs/slack.md)"


def _serve(
    runtime: SlackRuntime, *, slack_settings: SlackSettings, args: argparse.Namespace
) -> None:
    """Pump job events and answer Slack until interrupted. HTTP mode is ``proofroom serve``'s
    service (``bot.serve``), with Slack required and its own port setting."""
    if args.http:
        from bot.serve.service import HttpService  # noqa: PLC0415 (uvicorn: HTTP mode only)

        HttpService(
            settings=runtime.settings,
            redis=runtime.redis,
            host=args.host,
            port=slack_settings.http_port if args.port is None else args.port,
            slack=runtime,
            slack_path=slack_settings.http_path,
            # What worker_if_needed decided: a worker renders in this process.
            worker_in_process=args.embedded_worker or not runtime.settings.redis_url,
        ).serve_forever()  # stops the runtime too
        return
    runtime.start_pump()
    try:
        socket_mode_handler(runtime, slack_settings=slack_settings).start()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()


def socket_mode_handler(
    runtime: SlackRuntime, *, slack_settings: SlackSettings
) -> SocketModeHandler:
    """Bolt's Socket Mode handler for the runtime's app, with the app token (``xapp-``):
    ``start()`` blocks serving, ``connect()`` returns once connected, ``close()`` ends it."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler  # noqa: PLC0415

    return SocketModeHandler(runtime.app, slack_settings.secret("app_token"))


class SlackRuntime:
    """The service stack for Slack: adapter, core, Bolt app, and the event pump thread."""

    def __init__(
        self,
        *,
        settings: Settings,
        slack_settings: SlackSettings,
        bot_settings: BotSettings,
        redis: redis_lib.Redis,
        socket_mode: bool,
        pump_block_ms: int = 1000,
        core: Callable[[BotService], Core] | None = None,
    ) -> None:
        """``core`` wraps the service for the app (a test's recorder); default: the service."""
        self.settings = settings
        self.redis = redis
        self.adapter = SlackAdapter(client=make_client(slack_settings), settings=slack_settings)
        self.service = BotService.build(
            adapter=self.adapter, settings=settings, bot_settings=bot_settings, redis=redis
        )
        self.work = work_pool()
        self.app = build_app(
            core=core(self.service) if core is not None else self.service,
            adapter=self.adapter,
            redis=redis,
            key_prefix=settings.key_prefix,
            max_pixels=settings.limits.max_input_pixels,
            socket_mode=socket_mode,
            work=self.work,
            # Slack's roles, read only when a setting names one (scope usergroups:read).
            groups=UserGroups(
                client=self.adapter.client,
                wanted=bool(bot_settings.admin_roles or bot_settings.approver_roles),
            ),
        )
        self.pump_block_ms = pump_block_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_pump(self) -> None:
        """Bring job events into Slack threads from a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(
            target=self.service.pump_until,
            args=(self._stop,),
            kwargs={"block_ms": self.pump_block_ms},
            name="slack-pump",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the pump after its current batch, and finish the work of requests already
        acknowledged (a user whose command was acked gets its answer)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.work.shutdown(wait=True)
