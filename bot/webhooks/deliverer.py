"""Sending approved images to a CMS: the review desk puts each approval in the outbox
(``bot.webhooks.state``) as it exports the image, and :class:`WebhookDeliverer` sends what is
due from a thread beside the event pump, so every platform's bot delivers without code of
its own.

An attempt that gets no answer, times out, or gets a 5xx, 408 or 429 is tried again after
``backoff_s``, then twice that, and so on up to ``backoff_max_s`` (each wait drawn between
half and all of that, so bots that failed together do not retry together; a 429's
``Retry-After`` is honoured), ``attempts`` times in all. Any other status is a refusal and
is not retried. A delivery that failed for good is logged, kept in the outbox with its
error, and its thread is told once.

Once: a delivery is claimed before it is sent (two bots never send it together), marked
delivered after a 2xx, and never queued again for the same image. A bot that dies between
the receiver's answer and that mark leaves a claim that runs out; the delivery is then sent
again with the same ``idempotency_key``, which is why receivers should keep the keys they
have seen (``docs/webhooks.md``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bot.ports import ChatAdapter
from bot.records import ImageRecord
from bot.settings import BotSettings
from bot.webhooks.payload import (
    Approval,
    approval_of,
    body,
    delivery_key,
    inline_image,
    linked_image,
)
from bot.webhooks.signing import signed_headers
from bot.webhooks.state import Outboxed, WebhookState
from bot.webhooks.transport import Answer, post
from engine.outage import CONNECTION_ERRORS, Outage
from engine.store import ArtifactNotFoundError, ArtifactStore

log = logging.getLogger(__name__)

# How often a bot looks for deliveries another bot queued (its own wake it at once).
POLL_S = 1.0
# While Redis is away the loop tries again after 0.5 s, 1 s, 2 s ... at most this long.
OUTAGE_MAX_WAIT_S = 2.0
# What an attempt that could not read its image from the store says, before the error.
STORE_FAILED = "could not read the image from the artifact store"


@dataclass(frozen=True)
class WebhookTarget:
    """Where and how deliveries go: the plain values of ``PROOFROOM_WEBHOOK_*``."""

    url: str
    secret: str = field(repr=False)
    attempts: int = 10
    backoff_s: float = 2.0
    backoff_max_s: float = 600.0
    timeout_s: float = 10.0
    image_url_expires_s: int = 86400

    @classmethod
    def from_settings(cls, settings: BotSettings) -> WebhookTarget | None:
        """The target ``settings`` configure; None when no webhook URL is set."""
        if not settings.webhook_url or settings.webhook_secret is None:
            return None  # the settings refuse a URL without a secret
        return cls(
            url=settings.webhook_url,
            secret=settings.webhook_secret.get_secret_value(),
            attempts=settings.webhook_attempts,
            backoff_s=settings.webhook_backoff_s,
            backoff_max_s=settings.webhook_backoff_max_s,
            timeout_s=settings.webhook_timeout_s,
            image_url_expires_s=settings.webhook_image_url_expires_s,
        )


def backoff_s(
    failures: int, *, base_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """The wait after the ``failures``-th failed attempt: ``base_s`` doubled per failure,
    at most ``max_s``, times a random factor between 0.5 and 1."""
    ceiling = min(max_s, base_s * 2 ** min(failures - 1, 30))
    return ceiling * (0.5 + rand() / 2)


class WebhookDeliverer:
    """The outbox's sender for one platform's bot; see the module docstring."""

    def __init__(
        self,
        *,
        target: WebhookTarget,
        outbox: WebhookState,
        store: ArtifactStore,
        adapter: ChatAdapter,
        outage: Outage,
        poll_s: float = POLL_S,
    ) -> None:
        self.target = target
        self.outbox = outbox
        self.store = store
        self.adapter = adapter
        self.outage = outage
        self.poll_s = poll_s
        self.platform = adapter.platform
        self.owner = uuid.uuid4().hex
        # Longer than any one attempt can take, so a live bot's claim never runs out.
        self.lease_s = 2 * target.timeout_s + 30
        self._wake = threading.Event()

    # -- the review desk's side -------------------------------------------------------------

    def approved(self, image: ImageRecord, *, metadata: dict[str, Any]) -> None:
        """Queue the delivery of an image just exported with ``metadata`` (its sidecar);
        nothing happens for an image already queued or delivered."""
        approval = approval_of(image, metadata=metadata)
        if self.outbox.add(approval, due_at=time.time()):
            log.info("webhook delivery %s queued", approval.key)
            self._wake.set()

    def withdrawn(self, image: ImageRecord) -> None:
        """The image's approval was taken back: drop its delivery if it has not gone out."""
        key = delivery_key(image)
        if self.outbox.withdraw(key, platform=image.message.platform):
            log.info("webhook delivery %s dropped: approval withdrawn before it was sent", key)

    # -- the loop -------------------------------------------------------------------------

    @contextmanager
    def running(self, stop: threading.Event) -> Iterator[threading.Thread]:
        """:meth:`run_until` ``stop`` in a thread for the duration of the block."""
        thread = threading.Thread(
            target=self.run_until, args=(stop,), name=f"webhooks-{self.platform}", daemon=True
        )
        thread.start()
        try:
            yield thread
        finally:
            self._wake.set()
            thread.join(self.target.timeout_s + 5)

    def run_until(self, stop: threading.Event) -> None:
        """Send what is due until ``stop`` is set (noticed at once on leaving
        :meth:`running`, else within ``poll_s``). An approval in this process wakes it at
        once. Redis away: one log line (shared with the event pump), waits with backoff."""
        failures = 0
        while not stop.is_set():
            try:
                # Straight on while there was work (more may be due); else until the next
                # retry is due, at most poll_s.
                wait = 0.0 if self.deliver_due() else self._idle_s()
                if failures:
                    self.outage.recovered(reconnected=True)
                failures = 0
            except CONNECTION_ERRORS as exc:
                failures += 1
                self.outage.failed(exc)
                wait = min(OUTAGE_MAX_WAIT_S, 0.5 * 2 ** min(failures - 1, 8))
            except Exception:
                log.exception("webhook deliveries failed; retrying in 1 s")
                wait = 1.0
            if not stop.is_set():
                self._wake.wait(wait)
                self._wake.clear()

    def deliver_due(self) -> int:
        """One pass: an attempt for each delivery of this platform that is due and that no
        other bot is sending; return how many attempts were made."""
        attempts = 0
        for key in self.outbox.due(self.platform, now=time.time()):
            if not self.outbox.claim(key, owner=self.owner, lease_s=self.lease_s):
                continue  # another bot is sending it
            try:
                # Read again under the claim: another bot may have sent it, or failed and
                # put it off, since the due list was read.
                record = self.outbox.record(key)
                if record is None or record.status != "pending":
                    self.outbox.forget_due(key, platform=self.platform)
                elif self._due_now(key):
                    self._attempt(record)
                    attempts += 1
            finally:
                self.outbox.release(key, owner=self.owner)
        return attempts

    def _due_now(self, key: str) -> bool:
        due_at = self.outbox.due_at(key, platform=self.platform)
        return due_at is not None and due_at <= time.time()

    def _idle_s(self) -> float:
        """How long to wait after a pass that sent nothing: until the next retry is due, at
        most ``poll_s``. What is due already was skipped because another bot holds it (or a
        dead bot's claim has yet to run out): looking again at once would only spin."""
        due_at = self.outbox.next_due_at(self.platform)
        now = time.time()
        if due_at is None or due_at <= now:
            return self.poll_s
        return min(self.poll_s, due_at - now)

    # -- one attempt ----------------------------------------------------------------------

    def _attempt(self, record: Outboxed) -> None:
        approval, attempt = record.approval, record.attempts + 1
        try:
            image = self._image(approval)
        except ArtifactNotFoundError:
            self._give_up(approval, attempt, "the image is no longer in the artifact store")
            return
        except Exception as exc:  # the store away (S3): like a receiver away, try later
            log.warning(
                "webhook delivery %s: could not read its image", approval.key, exc_info=True
            )
            answer = Answer(status=None, detail=f"{STORE_FAILED}: {exc!r}")
        else:
            content = body(approval, image=image)
            headers = signed_headers(
                self.target.secret,
                body=content,
                key=approval.key,
                attempt=attempt,
                timestamp=int(time.time()),
            )
            answer = post(
                self.target.url, body=content, headers=headers, timeout_s=self.target.timeout_s
            )
        if answer.delivered:
            self.outbox.finish(
                approval.key, platform=self.platform, status="delivered", attempts=attempt
            )
            log.info("webhook delivery %s delivered (attempt %d)", approval.key, attempt)
        elif answer.retryable and attempt < self.target.attempts:
            wait = backoff_s(
                attempt,
                base_s=self.target.backoff_s,
                max_s=self.target.backoff_max_s,
            )
            if answer.retry_after_s is not None:
                wait = min(self.target.backoff_max_s, max(wait, answer.retry_after_s))
            self.outbox.retry_at(
                approval.key,
                platform=self.platform,
                at=time.time() + wait,
                attempts=attempt,
                error=answer.detail,
            )
            log.warning(
                "webhook delivery %s: attempt %d of %d failed (%s); next in %.1f s",
                approval.key,
                attempt,
                self.target.attempts,
                answer.detail,
                wait,
            )
        else:
            reason = (
                f"after {attempt} attempts, the last one got {_short(answer)}"
                if answer.retryable
                else f"the webhook refused it with {_short(answer)}"
            )
            self._give_up(approval, attempt, reason, detail=answer.detail)

    def _image(self, approval: Approval) -> dict[str, Any]:
        """The payload's ``image``: a signed URL when the store can give one, else the PNG."""
        artifact, expires_s = approval.image.artifact_id, self.target.image_url_expires_s
        # An S3-compatible store signs download URLs; the local store has none to give.
        url = self.store.url(artifact, expires_s=expires_s)
        if url:
            return linked_image(approval, url, expires_s=expires_s)
        return inline_image(approval, self.store.get(artifact))

    def _give_up(self, approval: Approval, attempts: int, reason: str, *, detail: str = "") -> None:
        self.outbox.finish(
            approval.key,
            platform=self.platform,
            status="failed",
            attempts=attempts,
            error=detail or reason,
        )
        log.error("webhook delivery %s failed: %s (%s)", approval.key, reason, detail or "-")
        image = approval.image
        text = (
            f"Image {image.number} (seed {image.seed}) is approved and exported, but I could "
            f"not send it on to the CMS: {reason}. An admin can check the webhook settings "
            f"(PROOFROOM_WEBHOOK_URL) and the bot's log for delivery `{approval.key}`."
        )
        try:
            self.adapter.post(
                channel=image.message.channel, thread=image.message.thread_id, text=text
            )
        except Exception:
            log.warning(
                "webhook delivery %s: could not tell its thread", approval.key, exc_info=True
            )


def _short(answer: Answer) -> str:
    """The answer for a chat message: a status or "no answer", never the receiver's text."""
    if answer.status is not None:
        return f"HTTP {answer.status}"
    return (
        "an error reading the image from the store"
        if answer.detail.startswith(STORE_FAILED)
        else "no answer"
    )
