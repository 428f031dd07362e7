"""An image into a Slack thread as one message people can react to, the way
``files_upload_v2`` does it (an upload URL, the bytes, ``files.completeUploadExternal`` with
the caption), in steps of the bot's own so that a completion whose answer was lost (a
timeout, a reset, a 5xx) is checked with ``files.info`` before it is tried again: an image is
posted once. ``files.completeUploadExternal`` does not return the message's ts, so it is
read from the file's ``shares`` (Slack fills them in asynchronously, hence a short wait)."""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.adapters.slack.client import SERVER_ERRORS, TRANSIENT_RETRIES
from bot.adapters.slack.settings import SlackSettings

log = logging.getLogger(__name__)

Call = Callable[..., Any]  # bot.adapters.slack.client.call bound to a client


def share_file(
    *,
    call: Call,
    settings: SlackSettings,
    channel: str,
    thread: str | None,
    data: bytes,
    filename: str,
    text: str,
) -> str:
    """Upload ``data`` and share it into ``thread`` with ``text`` (already mrkdwn); returns
    the ts of the message that carries it (the file id when no share showed up in time)."""
    target = call("files_getUploadURLExternal", filename=filename, length=len(data))
    file_id = str(target["file_id"])
    _put_bytes(url=str(target["upload_url"]), data=data, timeout_s=settings.api_timeout_s)
    ts = _complete_upload(
        call,
        settings=settings,
        file_id=file_id,
        channel=channel,
        thread=thread,
        title=filename,
        text=text,
    )
    if ts is None:
        ts = _share_ts(call, settings=settings, file_id=file_id, channel=channel, thread=thread)
    if ts is None:
        # The file is in the thread; only reactions on it can't be tied to it. Not an
        # error: the rules would post again a file people already see.
        log.warning(
            "no share of file %s in %s after %.1fs",
            file_id,
            channel,
            settings.share_wait_s,
        )
        ts = file_id
    return ts


def _put_bytes(*, url: str, data: bytes, timeout_s: float) -> None:
    """Step two of an upload: the bytes to the URL Slack gave. Repeating it only
    replaces bytes nobody sees yet, so any failure on the way is tried again."""
    for attempt in range(TRANSIENT_RETRIES + 1):
        request = urllib.request.Request(url, data=data, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            return
        except (OSError, HTTPException) as exc:  # HTTPError (any status), reset, timeout
            if attempt == TRANSIENT_RETRIES:
                raise
            log.warning("upload of file bytes failed (%s); trying again", exc)
            time.sleep(0.5 * 2**attempt)


def _complete_upload(
    call: Call,
    *,
    settings: SlackSettings,
    file_id: str,
    channel: str,
    thread: str | None,
    title: str,
    text: str,
) -> str | None:
    """Step three: share the file into ``thread`` with ``text``. When the answer is lost
    (5xx, reset, timeout), ``files.info`` says whether the share happened anyway; only
    if it did not is the call repeated, so the image is posted once. Returns the share's
    ts when that check found it, else None (the caller waits for it)."""
    for attempt in range(TRANSIENT_RETRIES + 1):
        try:
            call(
                "files_completeUploadExternal",
                files=[{"id": file_id, "title": title}],
                channel_id=channel,
                thread_ts=thread,
                initial_comment=text,
            )
            return None
        except SlackApiError as exc:
            status = exc.response.status_code if exc.response is not None else 200
            if status not in SERVER_ERRORS or attempt == TRANSIENT_RETRIES:
                raise
            reason: object = f"HTTP {status}"
        except (OSError, HTTPException) as exc:
            if attempt == TRANSIENT_RETRIES:
                raise
            reason = exc
        landed = _share_ts(
            call, settings=settings, file_id=file_id, channel=channel, thread=thread, wait_s=1.0
        )
        if landed is not None:
            log.warning("file %s: the share's answer was lost (%s) but it landed", file_id, reason)
            return landed
        log.warning("file %s: sharing failed (%s); trying again", file_id, reason)
        time.sleep(0.5 * 2**attempt)
    return None


def _share_ts(
    call: Call,
    *,
    settings: SlackSettings,
    file_id: str,
    channel: str,
    thread: str | None,
    wait_s: float | None = None,
) -> str | None:
    deadline = time.monotonic() + (settings.share_wait_s if wait_s is None else wait_s)
    delay = 0.1
    while True:
        shares = call("files_info", file=file_id)["file"].get("shares") or {}
        for kind in ("public", "private"):
            for share in (shares.get(kind) or {}).get(channel, []):
                if thread is None or share.get("thread_ts") == thread:
                    return str(share["ts"])
        if time.monotonic() + delay > deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
