"""What a batch's thread shows: its one progress message, its summary, and its manifest
(a CSV of every image with its review state, plus a zip of the approved images).

Reads the batch's hash (``bot.batch.state``, written by ``bot.batch.desk``) and the per-job
fields that ``bot.jobs.delivery`` records (the result, each image's message). A caller reads
the hash once (:meth:`~bot.batch.state.BatchState.fields`) and hands it to what it calls.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from bot.batch.manifest import ManifestEntry, manifest_csv, zip_parts
from bot.batch.plan import image_file_name
from bot.batch.state import BatchState
from bot.ports import ChatAdapter
from bot.records import loads_ref
from bot.state import BotState
from bot.texts import progress_bar
from engine.store import ArtifactStore

ENDED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class RowView:
    """One row as it stands: its latest job and that job's end (None while it runs)."""

    number: int
    job_id: str
    status: str | None


class BatchReport:
    """Read-side of batches; see the module docstring."""

    def __init__(
        self,
        *,
        adapter: ChatAdapter,
        state: BotState,
        batches: BatchState,
        store: ArtifactStore,
        upload_max_bytes: int,
    ) -> None:
        self.adapter = adapter
        self.state = state
        self.batches = batches
        self.store = store
        self.upload_max_bytes = upload_max_bytes

    def finished(self, fields: dict[str, str]) -> bool:
        """Whether every row's latest job has ended."""
        rows = _rows(fields)
        return bool(rows) and all(r.status in ENDED for r in rows)

    def summary(self, batch_id: str, fields: dict[str, str]) -> str:
        """One line: rows done, images, failures, and time left or taken."""
        meta, rows = json.loads(fields["meta"]), _rows(fields)
        done = [r for r in rows if r.status in ENDED]
        failed = [r.number for r in rows if r.status in ("failed", "cancelled")]
        images = (len(done) - len(failed)) * int(meta["variations"])
        elapsed = time.time() - float(meta["started"])
        parts = [f"{len(done)}/{len(rows)} rows", f"{images} images"]
        if failed:
            parts.append(f"{len(failed)} failed (row {', '.join(map(str, failed))})")
        if len(done) == len(rows):
            parts.append(f"took {_duration(elapsed)}")
        elif done:
            parts.append(f"about {_duration(elapsed / len(done) * (len(rows) - len(done)))} left")
        return f"Batch `{batch_id}`: " + " \u00b7 ".join(parts) + "."

    def progress(self, batch_id: str, fields: dict[str, str]) -> None:
        """Edit the batch's one progress message in place (only when its text changes)."""
        meta, rows = json.loads(fields["meta"]), _rows(fields)
        done = sum(r.status in ENDED for r in rows)
        summary = self.summary(batch_id, fields)
        text = f"\U0001f4e6 `{progress_bar(done, len(rows))}` {summary}"
        if done == len(rows):
            text += (
                f" React on each image to review it; `/imagine batch status {batch_id}` sends "
                f"the manifest, `/imagine batch retry {batch_id}` re-runs failed and rejected rows."
            )
        if fields.get("progress:text") == text:
            return
        self.adapter.edit(message=loads_ref(meta["progress"]), text=text)
        self.batches.set_progress_text(batch_id, text)

    def rows_to_retry(self, fields: dict[str, str]) -> list[tuple[int, str]]:
        """``(row, job)`` of rows that failed or have a rejected image."""
        entries, _ = self.entries(fields)
        bad = {e.row for e in entries if e.state in ("failed", "rejected")}
        return [(r.number, r.job_id) for r in _rows(fields) if r.number in bad]

    def entries(self, fields: dict[str, str]) -> tuple[list[ManifestEntry], dict[str, str]]:
        """The manifest rows, and the artifact id of each listed file."""
        thread = loads_ref(json.loads(fields["meta"])["thread"])
        rows = _rows(fields)
        outcomes = self.state.outcomes([row.job_id for row in rows], thread=thread)
        entries: list[ManifestEntry] = []
        artifacts: dict[str, str] = {}
        for row, outcome in zip(rows, outcomes, strict=True):
            prompt = outcome.record.spec.prompt if outcome.record else ""
            if row.status != "done" or outcome.images is None:
                status = "failed" if row.status in ("failed", "cancelled") else "queued"
                entries.append(ManifestEntry(row.number, 0, "", None, prompt, status, row.job_id))
                continue
            for image in outcome.images:
                name = image_file_name(row.number, image.index, image.seed)
                artifacts[name] = image.artifact_id
                entries.append(
                    ManifestEntry(
                        row.number,
                        image.index + 1,
                        name,
                        image.seed,
                        prompt,
                        image.state,
                        row.job_id,
                        "; ".join(image.flags),
                    )
                )
        return entries, artifacts

    def post_manifest(
        self, batch_id: str, fields: dict[str, str], *, unflagged: bool = False
    ) -> None:
        """Upload the manifest CSV and the approved images (zip, split to the upload limit)
        into the batch's thread; both are kept in the store too. ``unflagged``: only the
        rows whose image the automated QA did not flag (``/imagine batch status unflagged``)."""
        thread = loads_ref(json.loads(fields["meta"])["thread"])
        entries, artifacts = self.entries(fields)
        if unflagged:
            entries = [e for e in entries if not e.flags]
        counts = {
            s: sum(e.state == s for e in entries)
            for s in ("approved", "rejected", "pending", "failed")
        }
        flagged = sum(1 for e in entries if e.flags)
        data = manifest_csv(entries)
        self.store.put(data, suffix=".csv", meta={"batch": batch_id, "kind": "manifest"})
        self.adapter.upload(
            channel=thread.channel,
            thread=thread.thread_id,
            data=data,
            filename=f"batch-{batch_id}-manifest{'-unflagged' if unflagged else ''}.csv",
            text=(
                f"Manifest of batch `{batch_id}`: {counts['approved']} approved, "
                f"{counts['rejected']} rejected, {counts['pending']} waiting for review, "
                f"{counts['failed']} failed row(s)."
                + (
                    f" {flagged} flagged by the automated QA (its `flags` column)."
                    if flagged
                    else ""
                )
            ),
        )
        approved = [
            (e.file, self.store.get(artifacts[e.file])) for e in entries if e.state == "approved"
        ]
        parts = zip_parts(approved, max_bytes=self.upload_max_bytes)
        for number, part in enumerate(parts, start=1):
            self.store.put(part, suffix=".zip", meta={"batch": batch_id, "kind": "approved"})
            label = f" (part {number} of {len(parts)})" if len(parts) > 1 else ""
            self.adapter.upload(
                channel=thread.channel,
                thread=thread.thread_id,
                data=part,
                filename=f"batch-{batch_id}-approved-{number}.zip",
                text=f"Approved images of batch `{batch_id}`{label}.",
            )


def _rows(fields: dict[str, str]) -> list[RowView]:
    views = [
        RowView(int(name[4:]), job_id, fields.get(f"status:{job_id}"))
        for name, job_id in fields.items()
        if name.startswith("row:")
    ]
    return sorted(views, key=lambda v: v.number)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"
