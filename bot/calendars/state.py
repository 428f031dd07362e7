"""The Redis keys of content calendars:

- ``{key_prefix}:bot:calendar:{name}:{week}`` hash: ``thread`` (the week's thread) and
  ``title``; ``...:jobs`` list of the week's job ids. Expire with the bot's state.
- ``{key_prefix}:calendar:{name}:week:{week}`` and ``...:digest:{week}``: the scheduler's run
  markers, ``claimed`` while a post is under way (expiring after ``CLAIM_TTL_S``, so a
  process that died mid-post does not lose the week) and ``done`` once posted.

The markers use ``SET NX``, so a restart, two bot processes or a double trigger post a week
once (``bot.calendars.scheduler``).
"""

from __future__ import annotations

import redis as redis_lib

from bot.ports import MessageRef
from bot.records import dumps_ref, loads_ref
from engine.redis_values import as_text

# A claim that is never confirmed (the process died mid-post) expires so a later tick can
# post the week after all.
CLAIM_TTL_S = 15 * 60
DONE_TTL_S = 60 * 24 * 3600


class CalendarState:
    """Typed access to the calendar keys; holds no data."""

    def __init__(self, *, redis: redis_lib.Redis, key_prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = key_prefix
        self.ttl_s = ttl_s

    # -- posted weeks -------------------------------------------------------------------

    def add_week(
        self, calendar: str, week: str, *, thread: MessageRef, title: str, job_id: str
    ) -> None:
        """Remember a posted week: its thread, its title and its job."""
        key = self._week_key(calendar, week)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"thread": dumps_ref(thread), "title": title})
            pipe.rpush(f"{key}:jobs", job_id)
            pipe.expire(key, self.ttl_s)
            pipe.expire(f"{key}:jobs", self.ttl_s)
            pipe.execute()

    def week(self, calendar: str, week: str) -> tuple[MessageRef, str, list[str]] | None:
        """A posted week's thread, title and job ids; None for a week never posted."""
        key = self._week_key(calendar, week)
        raw_thread, raw_title = self.redis.hmget(key, ["thread", "title"])
        if raw_thread is None:
            return None
        job_ids = [as_text(j) for j in self.redis.lrange(f"{key}:jobs", 0, -1)]
        return loads_ref(as_text(raw_thread)), as_text(raw_title or b""), job_ids

    # -- run markers --------------------------------------------------------------------

    def claim(self, calendar: str, what: str) -> bool:
        """Claim a run (``week:<key>`` or ``digest:<key>``); False when it was claimed or
        done already."""
        return bool(
            self.redis.set(self._run_key(calendar, what), "claimed", nx=True, ex=CLAIM_TTL_S)
        )

    def release(self, calendar: str, what: str) -> None:
        """Give a claim back after a failed post, so the next tick tries again."""
        self.redis.delete(self._run_key(calendar, what))

    def mark_done(self, calendar: str, what: str) -> None:
        """The run happened (or had nothing to post): never again."""
        self.redis.set(self._run_key(calendar, what), "done", ex=DONE_TTL_S)

    def is_done(self, calendar: str, what: str) -> bool:
        """Whether the run happened."""
        return self.redis.get(self._run_key(calendar, what)) == b"done"

    def _week_key(self, calendar: str, week: str) -> str:
        return f"{self.prefix}:bot:calendar:{calendar}:{week}"

    def _run_key(self, calendar: str, what: str) -> str:
        return f"{self.prefix}:calendar:{calendar}:{what}"
