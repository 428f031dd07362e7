"""Job events into threads: one progress message per job edited in place, one message per
image, a plain sentence when a job fails.

Every post is recorded in Redis (``bot.state``) before the event is acknowledged, and checked
before posting, so an event delivered again (the bot died between posting and acking) posts
nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from bot import texts
from bot.ports import ChannelUnavailable, ChatAdapter, MessageRef
from bot.records import ImageRecord, JobRecord, dumps_ref, loads_ref
from bot.state import BotState
from engine.errors import internal_message
from engine.events import JobEvent
from engine.queue import JobQueue
from engine.spec import ImageResult, JobResult, JobSpec
from engine.store import ArtifactStore

log = logging.getLogger(__name__)


class Delivery:
    """Handles one job event at a time for one chat platform."""

    def __init__(
        self, *, adapter: ChatAdapter, state: BotState, queue: JobQueue, store: ArtifactStore
    ) -> None:
        self.adapter = adapter
        self.state = state
        self.queue = queue
        self.store = store
        # Called with (event, job) after an event is shown; workflows (batches) follow
        # their jobs this way.
        self.observers: list[Callable[[JobEvent, JobRecord], None]] = []

    def handle(self, event: JobEvent) -> bool:
        """Show ``event`` in its thread; False when it is not for this platform (nothing done)."""
        # One read of the job hash: its record and everything already posted for it.
        fields = self.state.job_fields(event.job_id)
        job = self._job(event, fields)
        if job is None:
            return False
        try:
            self._show(event, job, fields)
        except ChannelUnavailable as exc:
            self._undeliverable(job, exc)
        for observer in self.observers:
            observer(event, job)
        return True

    def repost(self, job_id: str) -> bool:
        """Post a finished job's images that could not be posted before (the bot was not in
        the channel); False when there is nothing left to post. ``ChannelUnavailable`` if
        the channel still refuses."""
        fields = self.state.job_fields(job_id)
        if "record" not in fields or "result" not in fields:
            return False
        job = JobRecord.model_validate_json(fields["record"])
        result = JobResult.model_validate_json(fields["result"])
        if all(f"image:{i.index}" in fields for i in result.images):
            return False
        # The progress message was refused with the images: it says "Done" now, not the
        # step it stopped at.
        done = JobEvent(job_id=job.spec.id, kind="done", origin=job.spec.origin, result=result)
        self._progress(done, job, fields, count=len(result.images), seconds=result.total_s or None)
        self.state.set_field(job.spec.id, "posted:end", "done")
        self._post_images(job, result.images, fields)
        self.state.close_job(job)
        return True

    def _show(self, event: JobEvent, job: JobRecord, fields: dict[str, str]) -> None:
        if event.kind == "done":
            self._done(event, job, fields)
        elif event.kind == "failed":
            self._failed(event, job, fields)
        elif event.kind == "cancelled":
            self._progress(event, job, fields)
            self.state.set_field(job.spec.id, "posted:end", "cancelled")
            self.state.close_job(job)
        elif "posted:end" not in fields:
            self._progress(event, job, fields)  # a late progress event must not undo the end

    def _undeliverable(self, job: JobRecord, exc: ChannelUnavailable) -> None:
        """The channel refuses our posts: the images stay in the store and the requester
        hears once what to do, including how to get the images afterwards."""
        if not self.state.once("undeliverable", job.spec.id):
            return
        log.warning("job %s: channel %s refuses posts (%s)", job.spec.id, exc.channel, exc.error)
        self.adapter.notify(
            channel=job.thread.channel,
            user=job.requester,
            text=f"{exc.message} Your images from job `{job.spec.id}` are kept; once I can post "
            f"there, type `/imagine repost {job.spec.id}` in that channel.",
        )

    # -- per kind -------------------------------------------------------------------------

    def _done(self, event: JobEvent, job: JobRecord, fields: dict[str, str]) -> None:
        result = event.result
        images = result.images if result else []
        if result is not None:
            # Kept first, so `/imagine repost` can post the images if the channel refuses now.
            self.state.set_field(job.spec.id, "result", result.model_dump_json())
        self._progress(
            event, job, fields, count=len(images), seconds=result.total_s if result else None
        )
        self.state.set_field(job.spec.id, "posted:end", "done")
        self._post_images(job, images, fields)
        self.state.close_job(job)

    def _post_images(
        self, job: JobRecord, images: list[ImageResult], fields: dict[str, str]
    ) -> None:
        # A re-render is numbered like the image it replaces ("image 2 of 4").
        original = self._original(job)
        original_number, original_of = (original.number, original.of) if original else (1, 1)
        parent = f"image {original_number}" if job.rerender_of else None
        # A follow-up's images are numbered among themselves, their caption names the parent.
        source = self._followed_up(job)
        for image in sorted(images, key=lambda i: i.index):
            if f"image:{image.index}" in fields:
                continue  # posted before a restart
            record = ImageRecord(
                message=MessageRef(job.thread.platform, job.thread.channel, "?", None),
                job_id=job.spec.id,
                index=image.index,
                seed=image.seed,
                artifact_id=image.artifact_id,
                width=image.width,
                height=image.height,
                requester=job.requester,
                root="",
                number=image.index + 1 if job.rerender_of is None else original_number,
                of=job.spec.count if job.rerender_of is None else original_of,
            )
            ref = self.adapter.upload(
                channel=job.thread.channel,
                thread=job.thread.thread_id,
                data=self.store.get(image.artifact_id),
                filename=f"{job.spec.id}-{image.index}-{image.seed}.png",
                text=_labelled(
                    job, texts.caption(record, parent=parent, head=_head(job, record, source))
                )
                + texts.flagged(image.flags, rerendered=image.rerendered_from is not None),
                votable=True,
            )
            record = record.model_copy(update={"message": ref, "root": job.root or ref.key})
            self.state.add_image(record)
            self.state.set_field(job.spec.id, f"image:{image.index}", ref.id)

    def _failed(self, event: JobEvent, job: JobRecord, fields: dict[str, str]) -> None:
        self._progress(event, job, fields)
        if "posted:end" not in fields:
            message = event.message or internal_message(job.spec.id)
            self.adapter.post(
                channel=job.thread.channel,
                thread=job.thread.thread_id,
                text=texts.failure(message),
            )
            self.state.set_field(job.spec.id, "posted:end", "failed")
        self.state.close_job(job)

    def _progress(
        self,
        event: JobEvent,
        job: JobRecord,
        fields: dict[str, str],
        *,
        count: int | None = None,
        seconds: float | None = None,
    ) -> None:
        if job.spec.origin.get("batch"):
            return  # a batch shows one progress message for all its jobs (bot.batch.desk)
        text = texts.progress_line(
            kind=event.kind,
            spec_id=job.spec.id,
            step=event.step,
            total=event.total,
            position=event.position,
            count=count,
            seconds=seconds,
            message=event.message
            or (internal_message(job.spec.id) if event.kind == "failed" else ""),
        )
        raw = fields.get("progress")
        if raw is None:
            ref = self.adapter.post(
                channel=job.thread.channel, thread=job.thread.thread_id, text=text
            )
            self.state.set_fields(job.spec.id, {"progress": dumps_ref(ref), "progress:text": text})
        elif fields.get("progress:text") != text:
            self.adapter.edit(message=loads_ref(raw), text=text)
            self.state.set_field(job.spec.id, "progress:text", text)

    # -- routing --------------------------------------------------------------------------

    def _job(self, event: JobEvent, fields: dict[str, str]) -> JobRecord | None:
        """The job's record (from its hash, ``fields``); for a job queued by someone else (a
        batch, a calendar) with an origin on this platform, a record made from the origin
        and the queued spec."""
        origin = event.origin
        if origin.get("platform") not in (None, self.adapter.platform):
            return None
        if "record" in fields:
            return JobRecord.model_validate_json(fields["record"])
        if origin.get("platform") != self.adapter.platform or not origin.get("channel"):
            return None
        spec = self.queue.spec(event.job_id)
        if spec is None:
            log.warning("job %s: event %s for an unknown spec; skipped", event.job_id, event.kind)
            return None
        channel = origin["channel"]
        thread = MessageRef(self.adapter.platform, channel, origin.get("thread") or "", None)
        if not thread.id:
            # No thread yet: open one so its images stay together.
            text = f"Job `{spec.id}`: {texts.escape(texts.clip(spec.prompt))}"
            thread = self.adapter.post(channel=channel, text=text)
        job = JobRecord(
            spec=spec,
            thread=thread,
            requester=origin.get("requester") or spec.requested_by,
            rerender_of=origin.get("rerender_of"),
            root=origin.get("root"),
            followup=_followup(origin.get("followup")),
            followup_of=origin.get("followup_of"),
        )
        self.state.add_job(job)
        return job

    def _original(self, job: JobRecord) -> ImageRecord | None:
        if not job.rerender_of:
            return None
        platform, channel, message_id = job.rerender_of.split(":", 2)
        return self.state.image(MessageRef(platform, channel, message_id))

    def _followed_up(self, job: JobRecord) -> ImageRecord | None:
        """The image a variation or upscale job started from (None: not one, or forgotten)."""
        if not job.followup_of:
            return None
        platform, channel, message_id = job.followup_of.split(":", 2)
        return self.state.image(MessageRef(platform, channel, message_id))


def _head(job: JobRecord, image: ImageRecord, source: ImageRecord | None) -> str | None:
    """A follow-up image's caption head ("Variation 1/4 of image 2"); None for others."""
    if job.followup is None:
        return None
    return texts.followup_head(
        job.followup,
        number=image.number,
        of=image.of,
        parent=source.number if source is not None else None,
        scale=job.spec.scale,
    )


def _followup(kind: str | None) -> Literal["vary", "upscale"] | None:
    return "vary" if kind == "vary" else "upscale" if kind == "upscale" else None


def _labelled(job: JobRecord, caption: str) -> str:
    """Batch images say which row they belong to, so a reviewer knows what they show."""
    label = job.spec.origin.get("label")
    return f"{texts.escape(label)} \u00b7 {caption}" if label else caption  # a CSV cell


def spec_summary(spec: JobSpec) -> str:
    """A one-line description of a job for lists (``/imagine status``)."""
    return f"{spec.count} x `{spec.model}`: {texts.escape(texts.clip(spec.prompt, 60))}"
