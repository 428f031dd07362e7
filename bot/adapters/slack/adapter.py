"""``ChatAdapter`` over the Slack Web API (slack_sdk ``WebClient``): a translator only.

- Posts and edits use ``chat.postMessage`` / ``chat.update`` with the bot token, never
  ``response_url`` (five uses in 30 minutes).
- Each image is one message people can react to, shared into the job's thread with its
  caption and posted once even when an answer is lost (:mod:`bot.adapters.slack.uploads`).
  Its ts is what ``reaction_added`` reports, so it is the id the rules map to (job, image
  index).
- Buttons cross the port in a neutral form and become Block Kit here (:func:`blocks_for`).
- Every text goes out through :func:`~bot.adapters.slack.text.mrkdwn`: only the bot's own
  mentions stay live; a ``<!channel>`` or ``<@U…>`` in a prompt is shown, not obeyed.
- Calls that fail on the way rather than on their merits (HTTP 500/502/503/504, a
  connection reset, a timeout) are retried by the client (:mod:`bot.adapters.slack.client`),
  429s after ``Retry-After``. A ``chat.postMessage`` whose request reached Slack but whose
  answer was lost is posted again: Slack has no idempotency key for messages, and the bot
  has no history scope to look.
- Files attached to a mention become :class:`~bot.ports.Attachment` values after the checks
  of :mod:`bot.jobs.attachments` (:meth:`SlackAdapter.attachments`).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlparse

from slack_sdk import WebClient

from bot.adapters.slack.client import SlackChannelRefused, call, make_client
from bot.adapters.slack.settings import SlackSettings
from bot.adapters.slack.text import mrkdwn
from bot.adapters.slack.uploads import share_file
from bot.jobs.attachments import AttachmentError, check_declared_size, checked_attachment
from bot.ports import Attachment, MessageRef, ReactionEvent, vote_for_emoji
from bot.texts import escape

log = logging.getLogger(__name__)

PLATFORM = "slack"
ACTION_PREFIX = "proofroom_"  # action_id of a button: proofroom_<action>, e.g. proofroom_cancel
SECTION_LIMIT = 3000  # characters of mrkdwn in one section block
IMAGE_TYPES = {"png", "jpg", "jpeg", "webp"}

__all__ = ["SlackAdapter", "SlackChannelRefused", "blocks_for", "make_client"]


class SlackAdapter:
    """The Slack side of the ``ChatAdapter`` port, plus translation of incoming payloads."""

    platform = PLATFORM

    def __init__(self, *, client: WebClient, settings: SlackSettings) -> None:
        self.client = client
        self.settings = settings
        self._edit_lock = threading.Lock()
        self._next_edit = 0.0  # monotonic time before which chat.update waits

    # ---- ChatAdapter ---------------------------------------------------------------
    def post(
        self,
        *,
        channel: str,
        text: str,
        thread: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> MessageRef:
        """``chat.postMessage``; with ``blocks``, ``text`` is also the notification and
        plain-text fallback."""
        text = mrkdwn(text)
        response = self._call(
            "chat_postMessage",
            channel=channel,
            text=text,
            thread_ts=thread,
            blocks=None if blocks is None else blocks_for(text=text, blocks=blocks),
            unfurl_links=False,
            unfurl_media=False,
        )
        return MessageRef(PLATFORM, response["channel"], response["ts"], thread)

    def edit(
        self, *, message: MessageRef, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """``chat.update``. Blocks are always sent: a message posted with blocks shows its
        section, not its text, so a text-only update would not show; buttons not given
        again are removed (a finished job loses its Cancel button)."""
        with self._edit_lock:  # paced below chat.update's rate limit instead of hitting 429s
            time.sleep(max(0.0, self._next_edit - time.monotonic()))
            self._next_edit = time.monotonic() + self.settings.update_interval_s
        text = mrkdwn(text)
        self._call(
            "chat_update",
            channel=message.channel,
            ts=message.id,
            text=text,
            blocks=blocks_for(text=text, blocks=blocks or []),
        )

    def upload(
        self,
        *,
        channel: str,
        thread: str | None,
        data: bytes,
        filename: str,
        text: str,
        votable: bool = False,
    ) -> MessageRef:
        """One file, with ``text`` as its message, in ``thread``; the ref's id is the ts of
        the message that carries the file. ``votable`` changes nothing: Slack shows the
        reaction picker under every message."""
        ts = share_file(
            call=self._call,
            settings=self.settings,
            channel=channel,
            thread=thread,
            data=data,
            filename=filename,
            text=mrkdwn(text),
        )
        return MessageRef(PLATFORM, channel, ts, thread)

    def notify(self, *, channel: str, user: str, text: str, thread: str | None = None) -> None:
        """``chat.postEphemeral``; where the bot cannot post in ``channel`` at all, a direct
        message (the app's Messages tab) instead, since that is usually the news."""
        text = mrkdwn(text)
        try:
            self._call(
                "chat_postEphemeral", channel=channel, user=user, text=text, thread_ts=thread
            )
        except SlackChannelRefused:
            self._call("chat_postMessage", channel=user, text=text)

    def upload_private(
        self, *, channel: str, user: str, data: bytes, filename: str, text: str
    ) -> None:
        """A direct message (the app's Messages tab) with the file: an ephemeral reply
        cannot carry one. ``conversations.open`` gives the DM's channel id."""
        opened = self._call("conversations_open", users=user)
        self._call(
            "files_upload_v2",
            channel=opened["channel"]["id"],
            file=data,
            filename=filename,
            title=filename,
            initial_comment=mrkdwn(text),
        )

    # ---- incoming payloads ----------------------------------------------------------
    def reaction_event(
        self, *, event: dict[str, Any], event_id: str | None
    ) -> ReactionEvent | None:
        """``reaction_added``/``reaction_removed`` as a ``ReactionEvent``; None for reactions
        on things other than messages. Slack does not say which thread the message is in."""
        item = event.get("item") or {}
        if item.get("type") != "message" or not item.get("ts"):
            return None
        return ReactionEvent(
            platform=PLATFORM,
            user=event["user"],
            message=MessageRef(PLATFORM, item["channel"], item["ts"]),
            vote=vote_for_emoji(event.get("reaction", "")),
            added=event.get("type") != "reaction_removed",
            event_id=event_id,
        )

    def attachments(
        self, files: list[dict[str, Any]], *, max_pixels: int
    ) -> tuple[Attachment, ...]:
        """Slack file objects of a message as checked ``Attachment`` values: images (PNG,
        JPEG, WebP; init images) and CSV files (batches). Raises ``AttachmentError`` with the
        sentence for the user on the first file refused: too large (checked before
        downloading), of another type, or not what its name says."""
        limit = self.settings.max_intake_bytes
        result = []
        for file in files:
            if file.get("file_access") == "check_file_info" or "size" not in file:
                file = self._call("files_info", file=file["id"])["file"]  # partial object
            name = str(file.get("name") or file["id"])
            kind = _kind(file)
            if kind is None:
                raise AttachmentError(
                    f"`{escape(name)}` is a {file.get('pretty_type') or 'file'} I can't use; attach a PNG, "
                    "JPEG or WebP image (the starting image) or a CSV file (a batch)."
                )
            check_declared_size(filename=name, size=int(file.get("size") or 0), max_bytes=limit)
            data = self._download(file, name=name, max_bytes=limit)
            result.append(
                checked_attachment(
                    data, filename=name, csv=kind == "csv", max_bytes=limit, max_pixels=max_pixels
                )
            )
        return tuple(result)

    # ---- internals ----------------------------------------------------------------
    def _call(self, method: str, **kwargs: Any) -> Any:
        return call(self.client, method, **kwargs)

    def _download(self, file: dict[str, Any], *, name: str, max_bytes: int) -> bytes:
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        host = urlparse(url).hostname
        if host not in self.settings.download_hosts():
            # The bot token goes only to Slack: a file object naming another host is refused.
            raise AttachmentError(f"`{escape(name)}` is not stored on Slack, so I can't fetch it.")
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self.client.token}"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.headers.get_content_type() == "text/html":
                # Slack answers a download it refuses with its sign-in page and status 200.
                log.error(
                    "download of %s got HTML: is the files:read scope missing?", file.get("id")
                )
                raise AttachmentError(
                    f"Slack didn't let me download `{escape(name)}`; ask an admin to check my files:read scope."
                )
            data = response.read(max_bytes + 1)  # the declared size is not trusted
        check_declared_size(filename=name, size=len(data), max_bytes=max_bytes)
        return data


def blocks_for(*, text: str, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral blocks as Block Kit: ``text`` in section blocks, then one actions block with
    the buttons. A neutral button is ``{"type": "button", "action": "cancel", "value":
    "<job id>", "label": "Cancel"}`` (optional ``"style": "danger" | "primary"``); the click
    arrives as action ``proofroom_<action>``. Other neutral kinds are not shown.

    ``text`` is Slack markup already (:func:`~bot.adapters.slack.text.mrkdwn`). Sections are
    ``verbatim``: otherwise Slack would itself turn a plain ``@here`` or ``#channel`` in
    a prompt into a live mention or link."""
    sections = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": text[i : i + SECTION_LIMIT], "verbatim": True},
        }
        for i in range(0, max(len(text), 1), SECTION_LIMIT)
    ]
    buttons = []
    for block in blocks:
        if block.get("type") != "button":
            log.debug("block kind %r has no Slack form; skipped", block.get("type"))
            continue
        button: dict[str, Any] = {
            "type": "button",
            "action_id": ACTION_PREFIX + str(block["action"]),
            "text": {"type": "plain_text", "text": str(block.get("label") or block["action"])},
            "value": str(block.get("value", "")),
        }
        if block.get("style") in ("danger", "primary"):
            button["style"] = block["style"]
        buttons.append(button)
    return sections + ([{"type": "actions", "elements": buttons}] if buttons else [])


def _kind(file: dict[str, Any]) -> str | None:
    filetype = str(file.get("filetype") or "").lower()
    mimetype = str(file.get("mimetype") or "").lower()
    name = str(file.get("name") or "").lower()
    if filetype in IMAGE_TYPES or mimetype in ("image/png", "image/jpeg", "image/webp"):
        return "image"
    if filetype == "csv" or mimetype == "text/csv" or name.endswith(".csv"):
        return "csv"
    return None
