"""The bot's durable state in Redis: jobs and their threads, image messages, votes, notices,
the audit log. Nothing lives only in process memory, so a restarted bot (a new service)
still routes results to their threads and still counts reactions on old images. The
workflows keep their keys in state classes of their own (``bot.batch.state``,
``bot.calendars.state``).

Keys, all under ``{key_prefix}:bot:`` and expiring ``state_ttl_days`` (or ``state_ttl_s``)
after their last write, except those :func:`durable_key_patterns` lists:

- ``job:{job_id}`` hash: ``record`` (spec, thread, requester, lineage), ``progress`` (the
  progress message), ``posted:{what}`` / ``image:{index}`` (what was already posted, so a
  re-delivered event posts nothing twice);
- ``img:{message key}`` hash: ``record`` (job, index, seed, artifact...), ``state``
  (pending/approved/rejected), ``export`` (exported files), ``rerendered``;
- ``votes:{message key}`` sorted set of ``vote:user`` by time (a user's latest reaction wins);
- ``pending:{platform}:{channel}`` sorted set of image message keys awaiting a decision;
- ``rerenders:{root message key}`` counter; ``once:{...}`` markers; ``open:{platform}`` set
  of jobs not yet ended; ``audit`` stream of every vote.
- ``decisions`` hash: images approved and rejected, counted when an image enters that
  state; kept for good (``proofroom serve``'s ``/metrics`` reads it, see
  :func:`decisions_key`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import redis as redis_lib

from bot.ports import MessageRef, Vote
from bot.records import ImageRecord, ImageState, JobOutcome, JobRecord, ReviewedImage
from engine.redis_values import as_text, delete_if_held
from engine.spec import ImageResult, JobResult


def decisions_key(key_prefix: str) -> str:
    """The hash of images approved and rejected (fields ``approved``, ``rejected``)."""
    return f"{key_prefix}:bot:decisions"


def durable_key_patterns(key_prefix: str) -> tuple[str, ...]:
    """The keys (glob patterns) kept without a TTL on purpose: every other key of a
    deployment expires. Each is bounded: a counter, an index trimmed by its writer, or what
    an admin made and removes. ``tests/soak`` checks a long run against this list and
    ``docs/reliability.md`` cites it."""
    p = key_prefix
    return (
        # Counters over all time that /metrics reads (bot.state, engine.events, engine.ledger).
        decisions_key(p),
        f"{p}:outcomes",
        f"{p}:ledger:totals",
        # The job-event stream: trimmed to event_stream_maxlen entries; its consumer groups
        # (each bot's place in it) live on it (engine.events).
        f"{p}:events",
        # API keys, until `proofroom api-key revoke` (bot.api.state).
        f"{p}:apikey:*",
        f"{p}:apikeys",
        f"{p}:apikey-values:*",
        # Pools: one field per pool and per worker, dead workers dropped when read
        # (engine.pools); the catalog's reload generation (engine.reloads).
        f"{p}:pools:seen",
        f"{p}:pools:workers",
        f"{p}:catalog:generation",
        # Jobs being rendered now, by worker (engine.tasks; emptied as they end).
        f"{p}:running",
        # RQ's own keys for the prefix's queues: the queues, the workers listening on each
        # (removed when they stop) and its job registries (sorted sets RQ prunes itself).
        f"rq:queue:{p}-*",
        f"rq:workers:{p}-*",
        *(f"rq:{r}:{p}-*" for r in ("wip", "finished", "failed", "canceled", "scheduled")),
        *(f"rq:{r}:{p}-*" for r in ("deferred", "intermediate", "started")),
    )


class BotState:
    """Typed access to the bot's keys. One instance per process is enough; it holds no data."""

    def __init__(self, *, redis: redis_lib.Redis, key_prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.base = f"{key_prefix}:bot"
        self.ttl_s = ttl_s

    # -- jobs -----------------------------------------------------------------------------

    def add_job(self, record: JobRecord) -> None:
        """Remember a job before it is queued, and count it as open."""
        key = self._key("job", record.spec.id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, "record", record.model_dump_json())
            pipe.expire(key, self.ttl_s)
            pipe.sadd(self._key("open", record.thread.platform), record.spec.id)
            pipe.expire(self._key("open", record.thread.platform), self.ttl_s)
            pipe.execute()

    def job(self, job_id: str) -> JobRecord | None:
        """The job's record, or None for a job this bot did not queue (or long forgotten)."""
        raw = self.redis.hget(self._key("job", job_id), "record")
        return JobRecord.model_validate_json(raw) if raw else None

    def close_job(self, record: JobRecord) -> None:
        """The job ended (done, failed, cancelled) and its end was shown."""
        self.redis.srem(self._key("open", record.thread.platform), record.spec.id)

    def open_jobs(self, platform: str) -> set[str]:
        """Jobs for ``platform`` that have not ended (or whose end was not shown) yet."""
        return {as_text(v) for v in self.redis.smembers(self._key("open", platform))}

    def job_fields(self, job_id: str) -> dict[str, str]:
        """The whole job hash in one read: ``record`` and what was posted for it."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self._key("job", job_id)))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    def jobs_fields(self, job_ids: Sequence[str]) -> list[dict[str, str]]:
        """:meth:`job_fields` of each job, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self._key("job", job_id))
            return [{as_text(k): as_text(v) for k, v in h.items()} for h in pipe.execute()]

    def posted_images(self, record: JobRecord) -> dict[int, ImageRecord]:
        """The job's images posted in its thread, by index (``image:{index}`` names each
        image's message in the job hash)."""
        fields = self.job_fields(record.spec.id)
        thread = record.thread
        found = {}
        for name, message_id in fields.items():
            if not name.startswith("image:"):
                continue
            ref = MessageRef(thread.platform, thread.channel, message_id, thread.thread_id)
            image = self.image(ref)
            if image is not None:
                found[int(name.split(":", 1)[1])] = image
        return dict(sorted(found.items()))

    def set_field(self, job_id: str, field: str, value: str) -> None:
        """Record something about a job (what was posted, where)."""
        self.set_fields(job_id, {field: value})

    def set_fields(self, job_id: str, fields: dict[str, str]) -> None:
        """Record several things about a job in one write."""
        key = self._key("job", job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=cast(Any, fields))
            pipe.expire(key, self.ttl_s)
            pipe.execute()

    def outcomes(self, job_ids: Sequence[str], *, thread: MessageRef) -> list[JobOutcome]:
        """Each job's record, its images and their review, for jobs whose images were
        posted in ``thread``: what batch manifests and calendar digests list. Two round
        trips however many jobs and images (one pipeline of job hashes, one of images)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self._key("job", job_id))
            hashes = [{as_text(k): as_text(v) for k, v in h.items()} for h in pipe.execute()]
        results = [
            JobResult.model_validate_json(h["result"]) if "result" in h else None for h in hashes
        ]
        # The message of each posted image (``image:{index}`` names it) holds its review.
        posted = [
            fields[f"image:{image.index}"]
            for fields, result in zip(hashes, results, strict=True)
            for image in (result.images if result else ())
            if f"image:{image.index}" in fields
        ]
        with self.redis.pipeline(transaction=False) as pipe:
            for message_id in posted:
                ref = MessageRef(thread.platform, thread.channel, message_id, thread.thread_id)
                pipe.hmget(self._key("img", ref.key), "state", "export")
            reviews = dict(zip(posted, pipe.execute(), strict=True))
        outcomes = []
        for job_id, fields, result in zip(job_ids, hashes, results, strict=True):
            images = None
            if result is not None:
                images = tuple(
                    _reviewed(image, reviews.get(fields.get(f"image:{image.index}", "")))
                    for image in result.images
                )
            record = fields.get("record")
            outcomes.append(
                JobOutcome(
                    job_id=job_id,
                    record=JobRecord.model_validate_json(record) if record else None,
                    images=images,
                )
            )
        return outcomes

    # -- images ---------------------------------------------------------------------------

    def add_image(self, record: ImageRecord) -> None:
        """Remember an image message so reactions on it can be counted, now or after a restart."""
        key = self._key("img", record.message.key)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"record": record.model_dump_json(), "state": "pending"})
            pipe.expire(key, self.ttl_s)
            pipe.execute()
        self.set_pending(record, pending=True)

    def image(self, message: MessageRef) -> ImageRecord | None:
        """The image a message shows, or None for any other message."""
        raw = self.redis.hget(self._key("img", message.key), "record")
        return ImageRecord.model_validate_json(raw) if raw else None

    def image_state(self, message: MessageRef) -> ImageState:
        """pending, approved or rejected."""
        value = self.redis.hget(self._key("img", message.key), "state")
        return as_text(value) if value else "pending"  # type: ignore[return-value]

    def set_image_field(self, message: MessageRef, field: str, value: str) -> None:
        """Record ``state``, ``export`` or ``rerendered`` of an image; a new ``state`` of
        approved or rejected is counted in ``decisions``."""
        key = self._key("img", message.key)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, field, value)
            pipe.expire(key, self.ttl_s)
            if field == "state" and value in ("approved", "rejected"):
                pipe.hincrby(self._key("decisions"), value, 1)  # never expires: /metrics
            pipe.execute()

    def image_field(self, message: MessageRef, field: str) -> str | None:
        """One field of an image's hash."""
        value = self.redis.hget(self._key("img", message.key), field)
        return as_text(value) if value is not None else None

    def set_pending(self, record: ImageRecord, *, pending: bool) -> None:
        """Add the image to, or take it off, its channel's list of undecided images."""
        key = self._key("pending", record.message.platform, record.message.channel)
        if pending:
            self.redis.zadd(key, {record.message.key: time.time()})
            self.redis.expire(key, self.ttl_s)
        else:
            self.redis.zrem(key, record.message.key)

    def pending_in(self, *, platform: str, channel: str) -> list[ImageRecord]:
        """The channel's images still waiting for a decision, oldest first."""
        key = self._key("pending", platform, channel)
        records = []
        for member in self._members(key):
            raw = self.redis.hget(self._key("img", as_text(member)), "record")
            if raw:
                records.append(ImageRecord.model_validate_json(raw))
            else:
                self.redis.zrem(key, member)  # expired: prune
        return records

    @contextmanager
    def image_lock(self, message: MessageRef, *, timeout_s: float = 30.0) -> Iterator[None]:
        """Serialise vote handling per image: two reactions at once must not both export.
        SET NX plus a compare-and-delete in WATCH/MULTI rather than redis-py's Lock, which
        needs Lua, and the embedded fakeredis runs none."""
        key, token = self._key("lock", message.key), uuid.uuid4().hex
        deadline = time.monotonic() + timeout_s
        while not self.redis.set(key, token, nx=True, px=int(timeout_s * 1000)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"image {message.key} stayed locked for {timeout_s:.0f} s")
            time.sleep(0.01)
        try:
            yield
        finally:
            delete_if_held(self.redis, key, token=token)  # expired and taken: theirs now

    # -- votes ----------------------------------------------------------------------------

    def add_vote(self, message: MessageRef, *, user: str, vote: Vote) -> None:
        """``user`` reacted with ``vote`` (their latest reaction is their vote)."""
        key = self._key("votes", message.key)
        self.redis.zadd(key, {f"{vote}:{user}": time.time()})
        self.redis.expire(key, self.ttl_s)

    def remove_vote(self, message: MessageRef, *, user: str, vote: Vote) -> None:
        """``user`` took that reaction back."""
        self.redis.zrem(self._key("votes", message.key), f"{vote}:{user}")

    def votes(self, message: MessageRef) -> dict[str, Vote]:
        """Each user's current vote on the image: the latest reaction they still have on it."""
        current: dict[str, Vote] = {}
        for member in self._members(self._key("votes", message.key)):
            vote, _, user = as_text(member).partition(":")
            current[user] = vote  # type: ignore[assignment]  # later entries win
        return current

    def audit(self, **fields: str) -> None:
        """Append one line to the audit log (every vote, counted or not, and why)."""
        entry = {"ts": f"{time.time():.3f}", **fields}
        with self.redis.pipeline() as pipe:
            pipe.xadd(self._key("audit"), cast(Any, entry))
            pipe.expire(self._key("audit"), self.ttl_s)  # as the votes it records
            pipe.execute()

    def audit_log(self) -> list[dict[str, str]]:
        """The audit log, oldest first."""
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]], self.redis.xrange(self._key("audit"))
        )
        return [{as_text(k): as_text(v) for k, v in fields.items()} for _, fields in entries]

    # -- once-only markers --------------------------------------------------------------

    def once(self, *parts: str, ttl_s: int | None = None) -> bool:
        """True the first time these ``parts`` are seen (until the marker expires)."""
        key = self._key("once", *parts)
        return bool(self.redis.set(key, "1", nx=True, ex=ttl_s or self.ttl_s))

    def forget_once(self, *parts: str) -> None:
        """Drop the marker of :meth:`once` (what it guarded did not happen after all)."""
        self.redis.delete(self._key("once", *parts))

    def count_rerender(self, root: str) -> int:
        """Count one more re-render in the lineage of ``root``; return the new total."""
        key = self._key("rerenders", root)
        total = int(self.redis.incr(key))
        self.redis.expire(key, self.ttl_s)
        return total

    def uncount_rerender(self, root: str) -> None:
        """Give back a counted re-render that could not be queued."""
        self.redis.decr(self._key("rerenders", root))

    def _members(self, key: str) -> list[str]:
        """A sorted set's members, lowest score first, as text."""
        return [as_text(m) for m in cast(list[bytes], self.redis.zrange(key, 0, -1))]

    def _key(self, *parts: str) -> str:
        return ":".join((self.base, *parts))


def _reviewed(image: ImageResult, review: list[Any] | None) -> ReviewedImage:
    """A result's image with its review hash's ``state`` and ``export``; pending while it
    was never posted (no review hash)."""
    state, export = (as_text(v) if v is not None else None for v in review or (None, None))
    return ReviewedImage(
        index=image.index,
        seed=image.seed,
        artifact_id=image.artifact_id,
        state=cast(ImageState, state or "pending"),
        exports=tuple(json.loads(export)) if export else (),
        flags=tuple(str(flag.get("reason", flag.get("check", ""))) for flag in image.flags),
    )
