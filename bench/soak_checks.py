"""The soak's record of what the users did and its checks (``bench/soak.py`` drives the run):
the invariants once the run is over, the run's keys and their memory, and what is left once
the TTLs have passed."""

from __future__ import annotations

import fnmatch
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_lib

from bot.state import durable_key_patterns
from bot.testing.chat import FakeChat
from engine.events import outcomes_key
from engine.redis_values import as_text
from engine.settings import Settings
from engine.tasks import running_key

_FILE = re.compile(r"^(?P<job>[A-Za-z0-9_-]+)-(?P<index>\d+)-(?P<seed>\d+)\.png$")


@dataclass
class Soak:
    """What the users did (the driver's own record, checked against Redis and the chat)."""

    seed: int
    ttl_s: int
    commands: Counter[str] = field(default_factory=Counter)
    # event id -> (message id, user, vote): every distinct reaction event sent to an image.
    reactions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)  # events on images already expired
    posted_at: dict[str, float] = field(default_factory=dict)  # image message id -> seen
    redelivered: int = 0
    cancels_accepted: int = 0
    restart_at: int | None = None  # the command at which the first worker was killed
    running_at_kill: int = 0  # jobs it was rendering then
    # Every job event of the run, read as it comes (the stream itself expires with the TTLs).
    events: list[dict[str, Any]] = field(default_factory=list)
    last_event: str = "-"
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def tail(self, redis: redis_lib.Redis, key: str) -> None:
        """Read the events published since the last call."""
        low = f"({self.last_event}" if self.last_event != "-" else "-"
        for entry_id, fields in redis.xrange(key, min=low, max="+"):
            self.last_event = as_text(entry_id)
            self.events.append(json.loads(fields[b"event"]))

    def fail(self, message: str) -> None:
        """Record a broken invariant (all are collected, then reported together)."""
        self.violations.append(message)


# -- invariants -------------------------------------------------------------------------


def check(chat: FakeChat, soak: Soak, *, settings: Settings) -> None:
    """Check the invariants of the run (before the TTLs expire); ``bench/soak.py``'s
    docstring lists them."""
    redis, state = chat.redis, chat.service.state
    queued: set[str] = set()
    started: Counter[str] = Counter()
    terminal: Counter[str] = Counter()
    kinds: dict[str, str] = {}
    results: dict[str, Any] = {}
    for event in soak.events:
        job_id, kind = event["job_id"], event["kind"]
        if kind == "queued":
            queued.add(job_id)
        elif kind == "started":
            started[job_id] += 1
        elif kind in ("done", "failed", "cancelled"):
            terminal[job_id] += 1
            kinds[job_id] = kind
            if kind == "done":
                results[job_id] = event["result"]
    # The bot's records of jobs that ended over a TTL ago have expired: those still there.
    records = {as_text(k).rsplit(":", 1)[1] for k in redis.scan_iter(match=f"{state.base}:job:*")}
    if records - queued:
        soak.fail(f"jobs recorded but never queued: {records - queued}")
    for job_id in sorted(queued):
        if terminal[job_id] != 1:
            soak.fail(
                f"job {job_id} ended {terminal[job_id]} times: {_job_story(chat, soak, job_id)}"
            )
            continue
        shown = state.job_fields(job_id).get("posted:end") if job_id in records else kinds[job_id]
        if shown != kinds.get(job_id, "?"):
            soak.fail(f"job {job_id} ended {kinds.get(job_id)}, its thread shows {shown}")
    rendering = {as_text(k) for k in redis.hkeys(running_key(settings))}
    if rendering:
        soak.fail(f"jobs still recorded as rendering after every job ended: {rendering}")
    outcomes = {as_text(k): int(v) for k, v in redis.hgetall(outcomes_key(settings)).items()}
    if sum(outcomes.values()) != len(queued):
        soak.fail(f"outcomes count {outcomes} for {len(queued)} jobs")
    # Images: one upload per image of a finished job, none of the others.
    posted = Counter(
        (m.group("job"), int(m.group("index")))
        for msg in chat.adapter.messages.values()
        if msg.filename and (m := _FILE.match(msg.filename))
    )
    expected = {(job, image["index"]) for job, r in results.items() for image in r["images"]}
    for key, times in posted.items():
        if times != 1 or key not in expected:
            soak.fail(f"image {key} posted {times} times (of a finished job: {key in expected})")
    for key in sorted(expected - set(posted)):
        soak.fail(f"image {key} of a finished job was never posted")
    # Votes: one audit entry per reaction event on a remembered image, none for an event
    # delivered again; each image's votes are each user's latest; approved = exported.
    keys = {m.ref.id: m.ref.key for m in chat.adapter.messages.values()}
    audited = Counter(entry["message"] for entry in state.audit_log())
    sent = Counter(
        keys[message]
        for event_id, (message, _, _) in soak.reactions.items()
        if event_id not in soak.forgotten
    )
    for key in sorted(set(audited) | set(sent)):
        if audited[key] != sent[key]:
            soak.fail(f"image {key}: {audited[key]} audit entries for {sent[key]} reactions")
    audit_total = sum(audited.values())
    latest: dict[str, dict[str, str]] = {}
    for event_id, (message_id, user, vote) in soak.reactions.items():
        if vote != "rerender" and event_id not in soak.forgotten:
            latest.setdefault(message_id, {})[user] = vote
    approved: set[str] = set()  # file stems: job-index-seed
    for msg in chat.adapter.messages.values():
        if not msg.is_image or not msg.filename:
            continue
        sent_votes = latest.get(msg.ref.id, {}).values()
        if "approve" in sent_votes and "reject" not in sent_votes:  # one reject vetoes
            approved.add(Path(msg.filename).stem)
        if state.image(msg.ref) is None:
            continue  # expired: its votes with it
        counted = {u: v for u, v in state.votes(msg.ref).items() if v in ("approve", "reject")}
        if counted != latest.get(msg.ref.id, {}):
            soak.fail(f"image {msg.ref.id}: votes {counted}, sent {latest.get(msg.ref.id)}")
    exported = {p.stem for p in chat.service.bot_settings.export_path(settings).rglob("*.png")}
    if exported != approved:
        soak.fail(f"exported {sorted(exported)}, approved {sorted(approved)}")
    soak.figures.update(
        jobs=len(queued),
        ended=dict(Counter(kinds.values())),
        started_twice=sum(1 for n in started.values() if n > 1),
        running_at_kill=soak.running_at_kill,
        restart_at_command=soak.restart_at,
        images_posted=sum(posted.values()),
        reactions=len(soak.reactions),
        redelivered=soak.redelivered,
        on_forgotten_images=len(soak.forgotten),
        audit_entries=audit_total,
        approved=len(approved),
        commands=dict(soak.commands),
        cancels_accepted=soak.cancels_accepted,
    )
    no_ttl = keys_without_ttl(redis, settings.key_prefix)
    soak.figures["keys_without_ttl"] = sorted(no_ttl)
    for key in no_ttl:
        if not is_durable(key, settings.key_prefix):
            soak.fail(f"key {key} has no TTL and is not a documented durable key")


def _job_story(chat: FakeChat, soak: Soak, job_id: str) -> str:
    """What is known of a job, for a failure message: its events, RQ's status of it."""
    events = [e["kind"] for e in soak.events if e["job_id"] == job_id]
    return f"events {events}, RQ status {chat.service.queue.status(job_id)}"


def run_keys(redis: redis_lib.Redis, prefix: str) -> list[str]:
    """Every key of the run: its prefix's and RQ's for its queues, jobs and workers."""
    keys: set[str] = set()
    for pattern in (f"{prefix}*", f"rq:*{prefix}*"):
        keys.update(as_text(k) for k in redis.scan_iter(match=pattern, count=1000))
    return sorted(keys)


def keys_without_ttl(redis: redis_lib.Redis, prefix: str) -> list[str]:
    """The run's keys that never expire."""
    return [k for k in run_keys(redis, prefix) if redis.ttl(k) == -1]


def is_durable(key: str, prefix: str) -> bool:
    """Whether ``key`` is one of the documented durable keys (kept on purpose, bounded)."""
    return any(fnmatch.fnmatchcase(key, p) for p in durable_key_patterns(prefix))


def memory(redis: redis_lib.Redis, prefix: str) -> int:
    """Bytes the run's keys take (``MEMORY USAGE`` of each, summed)."""
    total = 0
    with redis.pipeline(transaction=False) as pipe:
        for key in run_keys(redis, prefix):
            pipe.memory_usage(key, samples=0)
        for used in pipe.execute():
            total += int(used or 0)
    return total


# Keys of the run that outlive its TTLs by design, each with a TTL of its own.
KEPT_LONGER = {
    "{p}:worker:*:stats": "a worker's counters: an hour, or twice the job timeout",
    "{p}:quota:*": "quota counters of a local day: until the day ends",
    "{p}:cancel:*": "a cancel flag: twice the job timeout and a minute",
    "rq:worker:*": "RQ's registration of the killed worker: RQ's worker TTL",
}


def kept_longer(key: str, prefix: str) -> bool:
    """Whether ``key`` is one of :data:`KEPT_LONGER`."""
    return any(fnmatch.fnmatchcase(key, p.format(p=prefix)) for p in KEPT_LONGER)


def after_ttls(
    redis: redis_lib.Redis,
    settings: Settings,
    soak: Soak,
    *,
    before: int,
    peak: int,
    say: Callable[[str], object],
) -> None:
    """Wait until every key of the run that is neither durable nor kept longer has expired
    (the TTLs, and a user's job index: the result TTL plus the job timeout), then check
    what is left and measure it."""
    prefix = settings.key_prefix
    waited = time.monotonic()
    deadline = waited + settings.result_ttl_s + settings.job_timeout_s + 30

    def expiring() -> list[str]:
        return [
            k
            for k in run_keys(redis, prefix)
            if not is_durable(k, prefix) and not kept_longer(k, prefix)
        ]

    while expiring() and time.monotonic() < deadline:
        time.sleep(1)
    left = run_keys(redis, prefix)
    after = memory(redis, prefix)
    soak.figures.update(
        waited_for_ttls_s=round(time.monotonic() - waited, 1),
        memory_after_bytes=after,
        keys_left={k: redis.ttl(k) for k in left},
        running_left={
            as_text(k): as_text(v) for k, v in redis.hgetall(running_key(settings)).items()
        },
    )
    say(f"soak: memory {before} bytes before, {peak} at the end, {after} after the TTLs")
    for key in expiring():
        soak.fail(f"key {key} still there (TTL {redis.ttl(key)}) after the TTLs")
    if after - before > max(8192, (peak - before) // 20):
        soak.fail(f"memory after the TTLs {after} bytes, {before} before, {peak} at the end")
