"""Job events: what happened to a job, in order, durably (a Redis Stream read by consumer groups).

The worker publishes ``queued`` (from the enqueuer), ``started``, ``progress``, and exactly one
terminal event per job: ``done``, ``failed`` or ``cancelled``. A chat process reads them through a
consumer group, so events published while it was down are delivered when it comes back, and an
event it read but did not acknowledge is delivered again after a restart, to it or (once idle
for ``settings.event_claim_idle_s``) to another consumer of its group.

Keys (all under ``settings.key_prefix``):

- ``{prefix}:events``: the stream, trimmed to about ``settings.event_stream_maxlen`` entries;
  it expires ``settings.result_ttl_s`` after the last event (as the results it reports), and
  a reader's next read starts it over with its group (``NOGROUP`` below).
- ``{prefix}:done:{job_id}``: the terminal guard; its value is the terminal kind. Set in the same
  transaction as the terminal event's XADD, so a job retried after a worker crash can never
  publish a second ``done``.
- ``{prefix}:outcomes``: a hash counting jobs by terminal kind, in the same transaction, so
  each job is counted once (``proofroom serve``'s ``/metrics``: ``proofroom_jobs_total``).

No torch here: the chat side imports this module.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import redis as redis_lib
from pydantic import BaseModel, Field

from engine.redis_values import as_text
from engine.settings import Settings
from engine.spec import JobResult

EventKind = Literal["queued", "started", "progress", "done", "failed", "cancelled"]
TERMINAL_KINDS: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class JobEvent(BaseModel):
    """One thing that happened to a job. ``origin`` is copied from the spec so that a consumer
    can route the event (platform, channel, thread) without looking anything up."""

    job_id: str
    kind: EventKind
    step: int | None = None  # progress: step k ...
    total: int | None = None  # ... of n
    position: int | None = None  # queued: place in line, 1 = next to start
    result: JobResult | None = None  # done
    message: str = ""  # failed/cancelled: a sentence for the user
    error_kind: str | None = None  # failed: UserError.kind, "internal", "timeout", "lost"
    origin: dict[str, str] = Field(default_factory=dict)
    ts: float = Field(default_factory=time.time)

    @property
    def terminal(self) -> bool:
        """Whether this is the job's last event (done, failed or cancelled)."""
        return self.kind in TERMINAL_KINDS


def outcomes_key(settings: Settings) -> str:
    """The hash of jobs ended, by terminal kind (``done``, ``failed``, ``cancelled``)."""
    return f"{settings.key_prefix}:outcomes"


class EventStream:
    """Publish and consume :class:`JobEvent` values on the prefix's Redis Stream."""

    def __init__(self, *, redis: redis_lib.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.key = f"{settings.key_prefix}:events"
        # Consumers that still have to replay their pending entries (first read after start).
        self._replaying: dict[tuple[str, str], str] = {}
        # When each consumer last took over entries abandoned by others (monotonic seconds).
        self._claimed_at: dict[tuple[str, str], float] = {}
        self._groups: set[str] = set()  # groups known to exist (saves a round trip per read)

    # -- publishing -------------------------------------------------------------------------

    def publish(self, event: JobEvent) -> str:
        """Append ``event``; return its stream entry id. Use :meth:`publish_terminal` for
        done/failed/cancelled so that each job ends exactly once."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self.key, self._fields(event), **self._trim())
            pipe.expire(self.key, self.settings.result_ttl_s)
            entry_id, _ = pipe.execute()
        return as_text(entry_id)

    def publish_terminal(self, event: JobEvent) -> str | None:
        """Publish a terminal event unless the job already has one; return the entry id, or
        ``None`` when another attempt (a retry after a crash, a racing cancel) ended it first."""
        if not event.terminal:
            raise ValueError(f"{event.kind} is not a terminal event")
        guard = self.guard_key(event.job_id)
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    # WATCH/MULTI rather than a Lua script: the embedded fakeredis runs no Lua.
                    pipe.watch(guard)
                    if pipe.exists(guard):
                        return None
                    pipe.multi()
                    pipe.set(guard, event.kind, ex=self.settings.result_ttl_s)
                    pipe.xadd(self.key, self._fields(event), **self._trim())
                    pipe.expire(self.key, self.settings.result_ttl_s)
                    pipe.hincrby(outcomes_key(self.settings), event.kind, 1)  # /metrics
                    _, entry_id, _, _ = pipe.execute()
                    return as_text(entry_id)
                except redis_lib.WatchError:
                    # Someone else ended the job, or the connection was lost (redis-py then
                    # raises WatchError too, and our EXEC may or may not have run): the guard,
                    # read again, tells which, so the job still ends exactly once.
                    continue

    def terminal_kind(self, job_id: str) -> str | None:
        """``done``, ``failed`` or ``cancelled`` once the job has ended, else ``None``."""
        value = self.redis.get(self.guard_key(job_id))
        return as_text(value) if value is not None else None

    def guard_key(self, job_id: str) -> str:
        """The key that records that ``job_id`` has ended."""
        return f"{self.settings.key_prefix}:done:{job_id}"

    # -- consuming --------------------------------------------------------------------------

    def ensure_group(self, group: str, *, start: str = "0") -> None:
        """Create consumer group ``group`` if it does not exist.

        It starts at the stream's beginning (``0``), not at ``$``: a group made by a bot's first
        start must still see the jobs queued (and finished) before it existed. Once the group
        exists, Redis keeps its position, so a bot that was down resumes where it stopped.
        """
        try:
            self.redis.xgroup_create(self.key, group, id=start, mkstream=True)
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(group)

    def drop_group(self, group: str) -> None:
        """Delete consumer group ``group`` (a one-off reader such as ``proofroom batch``)."""
        self.redis.xgroup_destroy(self.key, group)
        self._groups.discard(group)

    def read(
        self, *, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[tuple[str, JobEvent]]:
        """The next events for ``consumer`` in ``group`` as ``(entry_id, event)``.

        The first reads after this object was made return the consumer's own pending entries
        (delivered before but never acknowledged, e.g. before a crash); after those, new
        entries, waiting up to ``block_ms``. Entries another consumer left unacknowledged are
        taken over and replayed the same way, checked at first and then every
        ``settings.event_claim_idle_s``. Acknowledge each with :meth:`ack` once handled.
        """
        if group not in self._groups:
            self.ensure_group(group)
        me = (group, consumer)
        due = self._claimed_at.get(me, float("-inf")) + self.settings.event_claim_idle_s
        if time.monotonic() >= due:
            self._claimed_at[me] = time.monotonic()
            if self.claim_abandoned(group=group, consumer=consumer):
                self.replay(group=group, consumer=consumer)
        cursor = self._replaying.setdefault(me, "0")
        if cursor != ">":
            entries = self._xreadgroup(group, consumer, cursor, count, None)
            if entries:
                self._replaying[(group, consumer)] = entries[-1][0]
                return self._decode(group, entries)
            self._replaying[(group, consumer)] = ">"
        return self._decode(group, self._xreadgroup(group, consumer, ">", count, block_ms))

    def replay(self, *, group: str, consumer: str) -> None:
        """Make the next reads return ``consumer``'s pending entries again, oldest first
        (e.g. to retry events whose handling failed), before any new entry."""
        self._replaying[(group, consumer)] = "0"

    def claim_abandoned(self, *, group: str, consumer: str) -> int:
        """Make ``consumer`` the owner of every entry of ``group`` that another consumer
        read but has not acknowledged for ``settings.event_claim_idle_s`` (XAUTOCLAIM), so
        its replay of pending entries delivers them; returns how many were taken over."""
        min_idle_ms = int(self.settings.event_claim_idle_s * 1000)
        claimed, cursor = 0, "0-0"
        while True:
            try:
                reply: Any = self.redis.xautoclaim(
                    self.key,
                    group,
                    consumer,
                    min_idle_time=min_idle_ms,
                    start_id=cursor,
                    count=100,
                )
            except redis_lib.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                return claimed  # the stream was deleted: the next read starts it over
            claimed += len(reply[1])
            cursor = as_text(reply[0])
            if cursor == "0-0":  # the whole pending list was scanned
                return claimed

    def ack(self, *, group: str, entry_id: str) -> None:
        """Mark ``entry_id`` handled by ``group``; it is not delivered to it again."""
        self.redis.xack(self.key, group, entry_id)

    def history(self, job_id: str | None = None, *, count: int = 10_000) -> list[JobEvent]:
        """Events still in the stream, oldest first, optionally only one job's. A scan of the
        stream: for tests, the CLI and debugging, not for the chat path."""
        entries: Any = self.redis.xrange(self.key, count=count)
        events = [_event(fields) for _, fields in entries]
        return [e for e in events if job_id is None or e.job_id == job_id]

    # -- internals --------------------------------------------------------------------------

    def _xreadgroup(
        self, group: str, consumer: str, cursor: str, count: int, block_ms: int | None
    ) -> list[tuple[str, dict | None]]:
        try:
            reply: Any = self.redis.xreadgroup(
                group, consumer, {self.key: cursor}, count=count, block=block_ms
            )
        except redis_lib.ResponseError as exc:
            if "UNBLOCKED" in str(exc):
                return []  # the stream expired (or was deleted) while we waited on it
            if "NOGROUP" not in str(exc):
                raise
            # The stream (and its groups) was deleted since: start over from its beginning.
            self.ensure_group(group)
            reply = self.redis.xreadgroup(
                group, consumer, {self.key: cursor}, count=count, block=block_ms
            )
        if not reply:
            return []
        # redis-py returns [[stream, entries]] (RESP2) or {stream: [entries]} (RESP3).
        streams = reply.items() if isinstance(reply, dict) else reply
        return [
            (as_text(entry_id), fields) for _, entries in streams for entry_id, fields in entries
        ]

    def _decode(
        self, group: str, entries: list[tuple[str, dict | None]]
    ) -> list[tuple[str, JobEvent]]:
        decoded = []
        for entry_id, fields in entries:
            if not fields:
                # A pending entry trimmed from the stream (MAXLEN): nothing left to deliver.
                self.ack(group=group, entry_id=entry_id)
                continue
            decoded.append((entry_id, _event(fields)))
        return decoded

    def _fields(self, event: JobEvent) -> dict[Any, Any]:
        # job_id and kind are duplicated outside the JSON so XRANGE output is readable by eye.
        return {"job_id": event.job_id, "kind": event.kind, "event": event.model_dump_json()}

    def _trim(self) -> dict:
        return {"maxlen": self.settings.event_stream_maxlen, "approximate": True}


def _event(fields: dict) -> JobEvent:
    # Keys are bytes unless the client was made with decode_responses=True.
    return JobEvent.model_validate_json(fields.get(b"event") or fields["event"])
