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

Every listener acknowledges in the thread that received the request and hands its work to a
pool (``process_before_response``): Bolt's default instead runs each listener on a pool of
ten threads and polls every 10 ms for the ack, so that under a burst an ack waits for the
work of the commands before it, and a lazy listener deep-copies the request (about 1 ms of
CPU per request). In HTTP mode the app is a route of ``proofroom serve``'s ASGI service
(``bot.serve.slack``: uvicorn reads requests, a pool of threads dispatches them to this
app). ``bench/ack.py`` measures both modes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol

import redis as redis_lib
from slack_bolt import Ack, App, BoltResponse, Respond
from slack_bolt.request import BoltRequest

from bot.adapters.slack.adapter import ACTION_PREFIX, PLATFORM, SlackAdapter
from bot.adapters.slack.groups import UserGroups
from bot.adapters.slack.text import command_text, mrkdwn
from bot.jobs.attachments import AttachmentError
from bot.ports import CommandEvent, ReactionEvent
from bot.state import BotState

log = logging.getLogger(__name__)

# Threads that run listeners' work after the ack: Bolt's own default size, enough for work that
# waits on the Web API (a rate-limited call waits seconds) without many more threads taking
# the GIL from the ones that acknowledge.
WORK_THREADS = 10


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
    work: Executor | None = None,
    groups: UserGroups | None = None,
) -> App:
    """The Bolt ``App`` for ``core``. In HTTP mode every request is checked against the
    signing secret (bad signature or a timestamp over five minutes old: 401). Listeners'
    work runs on ``work`` after the ack (default: a pool of ``WORK_THREADS`` threads).
    ``groups``: the user groups that are Slack's roles (none: no roles)."""
    settings = adapter.settings
    app = App(
        client=adapter.client,  # its bot token and rate-limit retries serve the app too
        signing_secret=None if socket_mode else settings.secret("signing_secret"),
        # Socket Mode envelopes come over the app-token WebSocket and carry no signature.
        request_verification_enabled=not socket_mode,
        name="proofroom",
        # Listeners run in the request's thread and return at once (see the module's
        # docstring); the response, the ack, goes out as soon as they return.
        process_before_response=True,
    )
    pool = work or work_pool()

    def roles(user: str) -> frozenset[str]:
        # After the ack, on the work pool: reading the groups may take a Web API call.
        return groups.of(user) if groups is not None else frozenset()

    def later(fn: Callable[..., None], *args: Any) -> None:
        pool.submit(_logged, fn, *args)

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
        later(answer_command, command, respond)

    def answer_command(command: dict[str, Any], respond: Respond) -> None:
        event = CommandEvent(
            platform=PLATFORM,
            user=command["user_id"],
            channel=command["channel_id"],
            text=command_text(command.get("text", "")),
            roles=roles(command["user_id"]),
        )
        # Escaped like every post: the reply may quote what the user typed.
        respond(text=mrkdwn(core.handle_command(event)), response_type="ephemeral")

    @app.event("app_mention")
    def mentioned(event: dict[str, Any]) -> None:
        later(answer_mention, event)  # acknowledged when this returns

    def answer_mention(event: dict[str, Any]) -> None:
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
            roles=roles(event["user"]),
        )
        reply = core.handle_command(command)
        adapter.notify(channel=event["channel"], user=event["user"], text=reply, thread=thread)

    @app.event("reaction_added")
    @app.event("reaction_removed")
    def reacted(event: dict[str, Any], body: dict[str, Any]) -> None:
        later(vote, event, body.get("event_id"))

    def vote(event: dict[str, Any], event_id: str | None) -> None:
        reaction = adapter.reaction_event(event=event, event_id=event_id)
        if reaction is not None:
            known = reaction.roles | roles(reaction.user)
            core.handle_reaction(dataclasses.replace(reaction, roles=known))

    @app.action(ACTION_PREFIX + "cancel")
    def cancel(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        later(answer_cancel, body, action, respond)

    def answer_cancel(body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        event = CommandEvent(
            platform=PLATFORM,
            user=body["user"]["id"],
            channel=body["channel"]["id"],
            text=f"cancel {action['value']}",
            roles=roles(body["user"]["id"]),
        )
        respond(
            text=mrkdwn(core.handle_command(event)),
            response_type="ephemeral",
            replace_original=False,
        )

    return app


def work_pool() -> ThreadPoolExecutor:
    """The pool that runs listeners' work after the ack; ``shutdown()`` it when done."""
    return ThreadPoolExecutor(max_workers=WORK_THREADS, thread_name_prefix="slack-work")


def _logged(fn: Callable[..., None], *args: Any) -> None:
    # A pool keeps a task's exception in its future, which nobody reads: log it here, as
    # Bolt's listener error handler did while the work ran inside the listener.
    try:
        fn(*args)
    except Exception:
        log.exception("Slack listener %s failed", fn.__name__)
