"""The Bolt app: Slack requests in, calls on the core out. Wiring and translation only.

- ``/imagine``: ``ack()`` first (Slack allows 3 s), then the core; its reply goes back
  through ``respond()`` (the command's ``response_url``, ephemeral), which also works in
  channels the bot is not in, where it must tell the user to invite it.
- ``app_mention``: ``@proofroom <same arguments>`` with files attached (a slash command
  cannot carry one): the files are checked and downloaded, then handed to the core as
  attachments; a refused file is answered at once and nothing is queued.
- ``reaction_added`` / ``reaction_removed``: votes.
- The Cancel button: the same as typing ``/imagine cancel <job>``, so the core's rules for
  who may cancel apply unchanged.
- Events API re-deliveries (Slack retries when it got no answer in 3 s) are dropped by
  ``event_id``, remembered in Redis, so a retry that reaches another process is dropped too.
"""

from __future__ import annotations

import logging
import threading
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis as redis_lib
from slack_bolt import Ack, App, BoltResponse, Respond
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.request import BoltRequest

from bot.adapters.slack.adapter import ACTION_PREFIX, PLATFORM, SlackAdapter
from bot.adapters.slack.text import command_text, mrkdwn
from bot.jobs.attachments import AttachmentError
from bot.ports import CommandEvent, ReactionEvent
from bot.state import BotState

log = logging.getLogger(__name__)


class Core(Protocol):
    """What the app calls: the service (``bot.service``) provides both."""

    def handle_command(self, event: CommandEvent) -> str: ...

    def handle_reaction(self, event: ReactionEvent) -> None: ...


def build_app(
    *,
    core: Core,
    adapter: SlackAdapter,
    redis: redis_lib.Redis,
    key_prefix: str,
    max_pixels: int,
    socket_mode: bool = False,
) -> App:
    """The Bolt ``App`` for ``core``. In HTTP mode every request is checked against the
    signing secret (bad signature or a timestamp over five minutes old: 401)."""
    settings = adapter.settings
    app = App(
        client=adapter.client,  # its bot token and rate-limit retries serve the app too
        signing_secret=None if socket_mode else settings.secret("signing_secret"),
        # Socket Mode envelopes come over the app-token WebSocket and carry no signature.
        request_verification_enabled=not socket_mode,
        name="proofroom",
    )
    # The transport's own redeliveries (any Events API event), before any listener runs.
    markers = BotState(redis=redis, key_prefix=key_prefix, ttl_s=settings.dedupe_ttl_s)

    @app.middleware
    def drop_redeliveries(body: dict[str, Any], request: BoltRequest, next: Any) -> Any:
        event_id = body.get("event_id")
        if event_id and not markers.once("slack-event", event_id):
            retry = (request.headers.get("x-slack-retry-num") or ["0"])[0]
            log.info("event %s delivered again (retry %s); dropped", event_id, retry)
            return BoltResponse(status=200, body="")  # acknowledged: Slack stops retrying
        return next()

    @app.command("/imagine")
    def imagine(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack()  # before any work: Slack shows an error after 3 s
        event = CommandEvent(
            platform=PLATFORM,
            user=command["user_id"],
            channel=command["channel_id"],
            text=command_text(command.get("text", "")),
        )
        # Escaped like every post: the reply may quote what the user typed.
        respond(text=mrkdwn(core.handle_command(event)), response_type="ephemeral")

    @app.event("app_mention")
    def mentioned(event: dict[str, Any]) -> None:
        thread = event.get("thread_ts")
        try:
            files = adapter.attachments(event.get("files") or [], max_pixels=max_pixels)
        except AttachmentError as exc:
            adapter.notify(
                channel=event["channel"], user=event["user"], text=exc.message, thread=thread
            )
            return
        command = CommandEvent(
            platform=PLATFORM,
            user=event["user"],
            channel=event["channel"],
            text=command_text(event.get("text", ""), strip_mention=True),
            attachments=files,
        )
        reply = core.handle_command(command)
        adapter.notify(channel=event["channel"], user=event["user"], text=reply, thread=thread)

    @app.event("reaction_added")
    @app.event("reaction_removed")
    def reacted(event: dict[str, Any], body: dict[str, Any]) -> None:
        reaction = adapter.reaction_event(event=event, event_id=body.get("event_id"))
        if reaction is not None:
            core.handle_reaction(reaction)

    @app.action(ACTION_PREFIX + "cancel")
    def cancel(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        event = CommandEvent(
            platform=PLATFORM,
            user=body["user"]["id"],
            channel=body["channel"]["id"],
            text=f"cancel {action['value']}",
        )
        respond(
            text=mrkdwn(core.handle_command(event)),
            response_type="ephemeral",
            replace_original=False,
        )

    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow listener must not hold up shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)  # one line per request belongs in debug


class HttpServer:
    """Bolt's WSGI adapter on a threading ``wsgiref`` server: HTTP mode without extra
    dependencies. Put TLS (a reverse proxy) in front of it for Slack."""

    def __init__(self, app: App, *, host: str, port: int, path: str) -> None:
        self.server = make_server(
            host,
            port,
            SlackRequestHandler(app, path=path),
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self.path = path
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint Slack posts to (host as bound)."""
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}{self.path}"

    def start(self) -> HttpServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop`."""
        self.server.serve_forever(0.5)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
