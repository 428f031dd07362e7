"""The Slack Web API client as the adapter uses it: which failures are retried and how
(:func:`make_client`), and which API errors mean a channel the bot cannot post in
(:class:`SlackChannelRefused`, raised by :func:`call`)."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.adapters.slack.settings import SlackSettings
from bot.ports import ChannelUnavailable

# HTTP statuses of a Slack (or a proxy in front of it) in trouble: the call may be repeated.
SERVER_ERRORS = frozenset({500, 502, 503, 504})
TRANSIENT_RETRIES = 2
# Calls the client must not repeat blindly: a lost answer may hide a post that happened.
# They are checked before being repeated (:mod:`bot.adapters.slack.uploads`).
CHECKED_METHODS = frozenset({"files.completeUploadExternal"})

# API errors that retrying cannot fix: the bot is not in the channel, or the channel is gone.
CHANNEL_ERRORS = frozenset(
    {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}
)


class SlackChannelRefused(ChannelUnavailable):
    """Slack refused to post in a channel for a reason only a person can fix (invite the
    bot, unarchive the channel). ``message`` says what to do; ``error`` is Slack's code."""

    kind = "channel_unavailable"

    def __init__(self, *, channel: str, error: str) -> None:
        if error in ("not_in_channel", "channel_not_found"):
            # channel_not_found is also what a private channel looks like from outside.
            message = (
                f"I'm not a member of <#{channel}>, so I can't post there. Invite me with "
                "`/invite @proofroom` in that channel and try again."
            )
        elif error == "is_archived":
            message = f"<#{channel}> is archived, so I can't post there; use another channel."
        else:
            message = f"Slack doesn't let me post in <#{channel}> ({error}); ask a workspace admin."
        super().__init__(message, channel=channel, error=error)


class TransientErrorRetryHandler(RetryHandler):
    """Repeats a call that failed on the way rather than on its merits: HTTP 500, 502,
    503 or 504, a connection refused or reset, a timeout. slack_sdk's own handlers cover
    500 and 503 only, and no timeouts. :data:`CHECKED_METHODS` are left to the adapter."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if request.url.rsplit("/", 1)[-1] in CHECKED_METHODS:
            return False
        if response is not None:
            return response.status_code in SERVER_ERRORS
        # URLError, ConnectionResetError (RemoteDisconnected too) and TimeoutError are OSErrors.
        return isinstance(error, OSError)


def make_client(settings: SlackSettings) -> WebClient:
    """A ``WebClient`` that waits out rate limits and retries transient failures: slack_sdk
    only retries connection errors by default, and ``chat.postMessage`` allows about one
    message per second per channel."""
    return WebClient(
        token=settings.secret("bot_token"),
        base_url=settings.api_url,
        timeout=settings.api_timeout_s,  # type: ignore[arg-type]  # urllib takes a float
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=settings.rate_limit_retries),
            TransientErrorRetryHandler(max_retry_count=TRANSIENT_RETRIES),
        ],
    )


def call(client: WebClient, method: str, **kwargs: Any) -> Any:
    """``client.<method>(**kwargs)`` without the None arguments; an API error that only a
    person can fix (:data:`CHANNEL_ERRORS`) becomes :class:`SlackChannelRefused`."""
    args = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return getattr(client, method)(**args)
    except SlackApiError as exc:
        error = exc.response.get("error", "") if exc.response is not None else ""
        if error in CHANNEL_ERRORS:
            raise SlackChannelRefused(channel=str(args.get("channel")), error=error) from exc
        raise
