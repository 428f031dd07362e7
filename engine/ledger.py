"""The usage ledger: what the GPU did for whom, one compact record per job, kept in Redis
long after the job's own keys expire (``Settings.ledger_days``). No torch here: the worker
writes the records, the bot updates each image's outcome and reads them for reports.

Keys, under ``{key_prefix}:ledger:``:

- ``job:{job_id}`` hash: ``record`` (the :class:`UsageRecord` as JSON) and ``out:{index}``
  per image asked for: ``pending`` (posted, not decided), ``approved``, ``rejected`` or
  ``failed`` (never delivered: left out as blank, the job failed or was cancelled). Expires
  ``ledger_days`` after the job ended.
- ``index`` sorted set: job ids by the time they ended, so a range of days is one
  ``ZRANGEBYSCORE``; entries older than the retention are trimmed on each write, and the
  whole index expires when no job has ended for the retention.
- ``totals`` hash: ``jobs``, ``images`` (delivered) and ``gpu_s`` over all time, kept for
  good (``proofroom serve``'s ``/metrics`` reads it); a job written again adds only the
  difference.

Idempotent: the record is keyed by job id, so a job retried (or settled twice) is counted
once, with what its last attempt did. The worker writes before it publishes the job's end,
so every decision the bot records later finds the record.

GPU seconds are the seconds spent inside the pipeline's calls (``engine.calls.run_call``, and
the lone retry of a non-finite image). A micro-batched call renders several jobs' images at
once; its seconds are split among its jobs by image count (:func:`split_call_seconds`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Literal, cast, get_args

import redis as redis_lib
from pydantic import BaseModel, Field

from engine.redis_values import as_text
from engine.spec import ImageResult, JobSpec

Outcome = Literal["pending", "approved", "rejected", "failed"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
Status = Literal["done", "failed", "cancelled"]
CALENDAR_OWNER = "calendar"  # the requester name calendar jobs are queued under


class UsageRecord(BaseModel):
    """One job as the ledger keeps it: who and where, what was rendered, what it took."""

    job_id: str
    ended_at: float  # epoch seconds; the day a job counts for
    user: str  # "platform:user"; a calendar's jobs: "calendar:NAME"; a batch's: its requester
    platform: str = ""
    channel: str = ""
    template: str | None = None
    model: str
    loras: list[str] = Field(default_factory=list)  # "name:weight"
    count: int  # images asked for
    images: int  # images delivered
    steps: int
    width: int
    height: int
    priority: str = "interactive"
    batch: str | None = None
    calendar: str | None = None
    queue_wait_s: float = 0.0
    gpu_s: float = 0.0
    status: Status = "done"
    flagged: int = 0  # delivered images the automated checks flagged

    @property
    def size(self) -> str:
        """``WIDTHxHEIGHT``."""
        return f"{self.width}x{self.height}"


class LedgerEntry(BaseModel):
    """A record with the outcome of each image asked for (index -> outcome)."""

    record: UsageRecord
    outcomes: dict[int, Outcome]

    def count(self, outcome: Outcome) -> int:
        """How many of the job's images have ``outcome``."""
        return sum(1 for value in self.outcomes.values() if value == outcome)


def split_call_seconds(seconds: float, owners: Sequence[Hashable]) -> dict[Hashable, float]:
    """Split one call's ``seconds`` among the jobs of its images (``owners``: one entry per
    image of the call, naming its job) by image count: a job with 3 of a call's 4 images
    is charged 3/4 of its seconds. The shares add up to ``seconds``."""
    if not owners:
        return {}
    shares: dict[Hashable, float] = {}
    for owner in owners:
        shares[owner] = shares.get(owner, 0.0) + seconds / len(owners)
    return shares


def usage_record(
    spec: JobSpec,
    *,
    status: Status,
    images: Iterable[ImageResult] = (),
    gpu_s: float,
    queue_wait_s: float,
    ended_at: float,
) -> tuple[UsageRecord, dict[int, Outcome]]:
    """The record of ``spec`` and its images' first outcomes: ``images`` are the delivered
    ones, pending review (an image the automated checks flagged carries ``flags``); every
    other image asked for failed."""
    delivered = {image.index: image for image in images}
    calendar = spec.origin.get("calendar")
    user = spec.requested_by
    if calendar and user.endswith(f":{CALENDAR_OWNER}"):
        user = f"{CALENDAR_OWNER}:{calendar}"  # calendars have no person behind them
    record = UsageRecord(
        job_id=spec.id,
        ended_at=ended_at,
        user=user,
        platform=spec.origin.get("platform", ""),
        channel=spec.origin.get("channel", ""),
        template=spec.template,
        model=spec.model,
        loras=[f"{ref.name}:{ref.weight:g}" for ref in spec.loras],
        count=spec.count,
        images=len(delivered),
        steps=spec.steps,
        width=spec.width,
        height=spec.height,
        priority=spec.priority,
        batch=spec.origin.get("batch"),
        calendar=calendar,
        queue_wait_s=round(max(0.0, queue_wait_s), 3),
        gpu_s=round(max(0.0, gpu_s), 4),
        status=status,
        flagged=sum(1 for image in delivered.values() if image.flags),
    )
    outcomes: dict[int, Outcome] = {
        index: "pending" if index in delivered else "failed" for index in range(spec.count)
    }
    return record, outcomes


class Ledger:
    """The ledger's keys (see the module docstring) on one Redis client."""

    def __init__(
        self, *, redis: redis_lib.Redis, key_prefix: str, days: int = 400, ttl_s: int | None = None
    ) -> None:
        self.redis = redis
        self.base = f"{key_prefix}:ledger"
        self.ttl_s = ttl_s or days * 24 * 3600  # ttl_s: Settings.ledger_retention_s

    def job_key(self, job_id: str) -> str:
        """The hash of one job's record and outcomes."""
        return f"{self.base}:job:{job_id}"

    @property
    def index_key(self) -> str:
        """Job ids by the time they ended."""
        return f"{self.base}:index"

    @property
    def totals_key(self) -> str:
        """Running totals over all time."""
        return f"{self.base}:totals"

    def write(self, record: UsageRecord, outcomes: dict[int, Outcome]) -> None:
        """Record a job (again: the same job id replaces what it wrote before)."""
        key = self.job_key(record.job_id)
        before = self.entry(record.job_id)
        old = before.record if before is not None else None
        with self.redis.pipeline() as pipe:
            if old is None:
                pipe.hincrby(self.totals_key, "jobs", 1)
            pipe.hincrby(self.totals_key, "images", record.images - (old.images if old else 0))
            pipe.hincrbyfloat(self.totals_key, "gpu_s", record.gpu_s - (old.gpu_s if old else 0))
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "record": record.model_dump_json(),
                    **{f"out:{index}": value for index, value in outcomes.items()},
                },
            )
            pipe.expire(key, self.ttl_s)
            pipe.zadd(self.index_key, {record.job_id: record.ended_at})
            pipe.zremrangebyscore(self.index_key, "-inf", time.time() - self.ttl_s)
            # Every entry is past the retention once no job has ended for that long.
            pipe.expire(self.index_key, self.ttl_s)
            pipe.execute()

    def set_outcome(self, job_id: str, index: int, outcome: Outcome) -> bool:
        """Record image ``index``'s review outcome; False when the ledger has no such job
        (ended before the ledger existed, or past its retention)."""
        key = self.job_key(job_id)
        if not self.redis.hexists(key, "record"):
            return False
        self.redis.hset(key, f"out:{index}", outcome)
        return True

    def totals(self) -> dict[str, float]:
        """``jobs``, ``images`` and ``gpu_s`` recorded over all time."""
        raw = self.redis.hgetall(self.totals_key)
        return {as_text(k): float(as_text(v)) for k, v in raw.items()}

    def entry(self, job_id: str) -> LedgerEntry | None:
        """One job's record and outcomes."""
        return _entry(self.redis.hgetall(self.job_key(job_id)))

    def between(self, start: float, end: float) -> list[LedgerEntry]:
        """The jobs that ended in ``[start, end)`` (epoch seconds), oldest first."""
        found_ids: Any = self.redis.zrangebyscore(self.index_key, start, f"({end}")
        ids = [as_text(value) for value in found_ids]
        with self.redis.pipeline() as pipe:
            for job_id in ids:
                pipe.hgetall(self.job_key(job_id))
            found = pipe.execute() if ids else []
        entries = [_entry(fields) for fields in found]
        return [entry for entry in entries if entry is not None]


def _entry(fields: dict) -> LedgerEntry | None:
    text = {as_text(k): as_text(v) for k, v in fields.items()}
    if "record" not in text:
        return None  # expired between the index read and this one
    outcomes: dict[int, Outcome] = {}
    for name, value in text.items():
        if name.startswith("out:") and value in OUTCOMES:
            outcomes[int(name[4:])] = cast(Outcome, value)
    return LedgerEntry(
        record=UsageRecord.model_validate(json.loads(text["record"])), outcomes=outcomes
    )
