"""CSV batches from chat: ``/imagine batch <template> [--variations 3] [--seed 100]`` with a
CSV attached, ``/imagine batch status [batch]`` and ``/imagine batch retry <batch>``.

One thread per batch: a header, one progress message edited in place (rows done / total,
failures, ETA), then each row's images (one job per row, ``count`` = variations) so they
stay grouped and each can be reviewed by reaction as any other image. Jobs go to the
``bulk`` queue so single ``/imagine`` requests stay fast. Everything is validated before
the first job is queued (that the rows' models have workers too, ``bot.jobs.routing``: a
batch for a model no worker renders is refused whole; and that all its images fit in the
requester's bulk images of the day, ``bot.quotas``: reserved at once or refused whole), and
a failure while queueing cancels what was queued: no batch is ever half-enqueued. State
lives in Redis (``bot.batch.state``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bot import texts
from bot.batch.plan import (
    BATCH_USAGE,
    PlannedRow,
    enqueue_all,
    new_batch_id,
    parse_batch_command,
    plan_batch,
)
from bot.batch.report import BatchReport
from bot.batch.state import BatchState
from bot.grammar.tokens import TokenizeError, command_tokens
from bot.jobs.resolve import JobResolver
from bot.ports import Cancel, ChatAdapter, CommandEvent, MessageRef, Submit, requester_key
from bot.quotas.desk import QuotaDesk, Reservation
from bot.records import JobRecord, dumps_ref, loads_ref
from bot.state import BotState
from engine.errors import UserError
from engine.events import JobEvent
from engine.spec import JobSpec, reseeded

log = logging.getLogger(__name__)
CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel")


class BatchDesk:
    """The batch commands and the progress of every batch's thread."""

    def __init__(
        self,
        *,
        adapter: ChatAdapter,
        state: BotState,
        batches: BatchState,
        report: BatchReport,
        resolver: JobResolver,
        max_rows: int,
        submit: Submit,
        cancel: Cancel,
        quotas: QuotaDesk | None = None,
    ) -> None:
        self.adapter = adapter
        self.state = state
        self.batches = batches
        self.report = report
        self.resolver = resolver
        self.max_rows = max_rows
        self.submit = submit
        self.cancel = cancel
        self.quotas = quotas  # None: no limits (a desk built without the service's checks)

    # -- commands -----------------------------------------------------------------------

    def command(self, event: CommandEvent) -> str | None:
        """The reply to a batch command, or None when ``event`` is not one ("batch of
        cookies" is a prompt: a batch names a template, status, retry, or has a CSV)."""
        try:
            tokens = command_tokens(event.text)
        except TokenizeError:
            return None
        if not tokens or tokens[0].value.lower() != "batch":
            return None
        rest = tokens[1:]
        word = rest[0].value.lower() if rest else ""
        if word == "status" and len(rest) <= 3:
            # `status [batch] [unflagged]`: the manifest of the images the QA did not flag.
            words = [t.value for t in rest[1:]]
            unflagged = bool(words) and words[-1].lower() == "unflagged"
            words = words[:-1] if unflagged else words
            if len(words) <= 1:
                return self.status(event, words[0] if words else None, unflagged=unflagged)
        if word == "retry" and len(rest) <= 2:
            try:
                return self.retry(event, rest[1].value if len(rest) == 2 else None)
            except UserError as exc:  # e.g. no worker renders the rows' model any more
                return texts.escape(exc.message)
        if self.resolver.catalog.is_template(word) or _csv(event) is not None:
            try:
                return self.start(event, " ".join(t.raw for t in rest))
            except UserError as exc:  # it may quote cells and file names: user text
                return texts.escape(exc.message)
        return BATCH_USAGE if not rest else None

    def start(self, event: CommandEvent, text: str) -> str:
        """Validate the CSV against the template, then queue one bulk job per row."""
        attachment = _csv(event)
        if attachment is None:
            raise UserError(
                "attach the CSV file to the command (Slack: mention @proofroom in a message "
                "with the file; Discord: the `file` option); " + BATCH_USAGE
            )
        request, variations = parse_batch_command(
            text,
            catalog=self.resolver.catalog,
            max_prompt_chars=self.resolver.limits.max_prompt_chars,
        )
        planned = plan_batch(
            attachment.read(),
            request,
            variations=variations,
            resolver=self.resolver,
            max_rows=self.max_rows,
            requested_by=requester_key(event.platform, event.user),
        )
        # Once for the whole batch, before anything is posted or queued.
        waiting = self.resolver.route(item.spec.model for item in planned)
        reservation = self._reserve([item.spec for item in planned], event=event)
        try:
            return self._start(event, planned, request.template, variations, attachment, waiting)
        except BaseException:
            self._release(reservation)  # nothing of the batch was queued
            raise

    def _start(
        self,
        event: CommandEvent,
        planned: list[PlannedRow],
        template: str | None,
        variations: int,
        attachment: Any,
        waiting: str | None,
    ) -> str:
        batch_id = new_batch_id()
        images = len(planned) * variations
        thread = self.adapter.post(
            channel=event.channel,
            text=(
                f"\U0001f4e6 Batch `{batch_id}` from {texts.mention(event.user)}: {len(planned)} rows of "
                f"`{texts.escape(attachment.filename)}` \u00d7 {variations} variation(s) with template "
                f"`{template}` = {images} images on `{planned[0].spec.model}`. "
                "Each row's images follow below; react on each image to review it."
            ),
        )
        progress = self.adapter.post(
            channel=event.channel, thread=thread.thread_id, text=f"Batch `{batch_id}`: queued."
        )
        self._save(
            batch_id,
            event=event,
            thread=thread,
            progress=progress,
            planned=planned,
            variations=variations,
            filename=attachment.filename,
        )
        self._enqueue(batch_id, planned, thread=thread, requester=event.user)
        self._show_progress(batch_id)
        return (
            f"Queued batch `{batch_id}`: {len(planned)} rows \u00d7 {variations} = {images} "
            f"images on the bulk queue{', ' + waiting if waiting else ''}. Progress and images "
            f"are in the thread; `/imagine batch status {batch_id}` sends the manifest."
        )

    def status(self, event: CommandEvent, batch_id: str | None, *, unflagged: bool = False) -> str:
        """Summary of a batch (default: the channel's latest) and its manifest in the thread;
        ``unflagged``: the manifest and zip list only the images the QA checks passed."""
        batch_id = batch_id or self.batches.latest(event.channel)
        fields = self.batches.fields(batch_id) if batch_id else None
        if batch_id is None or fields is None:
            return "There is no batch in this channel yet; " + BATCH_USAGE
        self.report.post_manifest(batch_id, fields, unflagged=unflagged)
        which = "manifest of the unflagged images" if unflagged else "manifest"
        return self.report.summary(batch_id, fields) + f" The {which} is in the batch's thread."

    def retry(self, event: CommandEvent, batch_id: str | None) -> str:
        """Re-run the failed rows and the rows with a rejected image, with new seeds."""
        batch_id = batch_id or self.batches.latest(event.channel)
        fields = self.batches.fields(batch_id) if batch_id else None
        if batch_id is None or fields is None:
            return "There is no batch to retry in this channel; `/imagine batch status` shows the latest."
        thread = loads_ref(json.loads(fields["meta"])["thread"])
        rows = self.report.rows_to_retry(fields)
        if not rows:
            return f"Batch `{batch_id}` has no failed or rejected rows to re-run."
        planned = []
        for number, job_id in rows:
            record = self.state.job(job_id)
            if record is None:
                continue
            spec = reseeded(record.spec, limits=self.resolver.limits, parent=job_id)
            planned.append((number, spec))
        waiting = self.resolver.route(spec.model for _, spec in planned)
        reservation = self._reserve([spec for _, spec in planned], event=event)
        # A new generation: the manifest is posted again once the re-runs end.
        self.batches.next_generation(batch_id)
        try:
            for number, spec in planned:
                self._submit(batch_id, number, spec, thread=thread, requester=event.user)
        except BaseException:
            self._release(reservation)  # rare: the rows queued before it go uncounted
            raise
        self._show_progress(batch_id)
        return (
            f"Re-running {len(planned)} row(s) of batch `{batch_id}` with new seeds: "
            + ", ".join(str(n) for n, _ in planned)
            + (f"; {waiting}" if waiting else "")
            + "."
        )

    def _reserve(self, specs: list[JobSpec], *, event: CommandEvent) -> Reservation | None:
        """Every image of a batch (or of its re-runs) reserved at once, or ``QuotaExceeded``."""
        if self.quotas is None:
            return None
        return self.quotas.reserve(specs, requester=event.user, roles=event.roles)

    def _release(self, reservation: Reservation | None) -> None:
        if self.quotas is not None and reservation is not None:
            self.quotas.release(reservation)

    # -- job events ---------------------------------------------------------------------

    def on_event(self, event: JobEvent, job: JobRecord) -> None:
        """Follow a batch job: count its end and edit the batch's progress message; when
        every row has ended, post the manifest once."""
        batch_id = job.spec.origin.get("batch")
        fields = self.batches.fields(batch_id) if batch_id and event.terminal else None
        if batch_id is None or fields is None:
            return  # not a batch job, not an end, or a batch that was never queued whole
        self.batches.set_status(batch_id, job_id=job.spec.id, kind=event.kind)
        fields[f"status:{job.spec.id}"] = event.kind
        self.report.progress(batch_id, fields)
        if self.report.finished(fields):
            generation = fields.get("generation", "0")
            if self.state.once("batch-done", batch_id, generation):
                self.report.post_manifest(batch_id, fields)

    # -- state --------------------------------------------------------------------------

    def _show_progress(self, batch_id: str) -> None:
        fields = self.batches.fields(batch_id)
        if fields is not None:
            self.report.progress(batch_id, fields)

    def _save(
        self,
        batch_id: str,
        *,
        event: CommandEvent,
        thread: MessageRef,
        progress: MessageRef,
        planned: list[PlannedRow],
        variations: int,
        filename: str,
    ) -> None:
        meta = {
            "id": batch_id,
            "platform": event.platform,
            "channel": event.channel,
            "requester": event.user,
            "thread": dumps_ref(thread),
            "progress": dumps_ref(progress),
            "rows": len(planned),
            "variations": variations,
            "filename": filename,
            "started": time.time(),
        }
        fields = {"meta": json.dumps(meta)}
        for item in planned:
            fields[f"row:{item.row.number}"] = item.spec.id
            fields[f"job:{item.spec.id}"] = str(item.row.number)
        self.batches.create(batch_id, channel=event.channel, fields=fields)

    def _enqueue(
        self, batch_id: str, planned: list[PlannedRow], *, thread: MessageRef, requester: str
    ) -> None:
        try:
            enqueue_all(
                planned,
                batch_id=batch_id,
                submit=lambda spec: self.submit(spec, thread=thread, requester=requester),
                cancel=self.cancel,
            )
        except Exception:
            log.exception(
                "batch %s: queueing failed; the jobs already queued are cancelled", batch_id
            )
            self.batches.forget(batch_id)
            self.adapter.edit(
                message=thread,
                text=f"\u26a0\ufe0f Batch `{batch_id}` could not be queued; nothing will render.",
            )
            raise UserError(
                f"batch `{batch_id}` could not be queued, so nothing was queued; "
                "please try again in a minute"
            ) from None

    def _submit(
        self, batch_id: str, number: int, spec: JobSpec, *, thread: MessageRef, requester: str
    ) -> None:
        self.batches.set_row_job(batch_id, row=number, job_id=spec.id)
        self.submit(spec, thread=thread, requester=requester)


def _csv(event: CommandEvent) -> Any:
    for attachment in event.attachments:
        name = attachment.filename.lower()
        if name.endswith(".csv") or attachment.content_type.split(";")[0] in CSV_TYPES:
            return attachment
    return None
