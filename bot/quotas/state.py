"""The quotas' Redis keys (all under ``{prefix}:quota:``):

- ``images:{day}:{user}`` and ``bulk:{day}:{user}``: images reserved by a requester
  (``platform:user``) on a local day, interactive and bulk; they expire a while after the
  day ends, so yesterday's counts clean themselves up.
- ``rate:{minute}:{user}``: commands in one clock minute (a fixed window), expiring after two.

A reservation checks every counter of a request and raises them all in one Lua script, so
two commands arriving at once cannot both pass a limit that only one of them fits in.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis as redis_lib

# KEYS: the counters; ARGV: for each counter its amount, its limit (-1: none) and its TTL.
# Returns 0 when every counter fits (and then raises them all), else {index, used} of the
# first counter that would go over, changing nothing.
_RESERVE = """
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[3 * i - 2])
  local limit = tonumber(ARGV[3 * i - 1])
  local used = tonumber(redis.call('GET', key) or '0')
  if limit >= 0 and used + n > limit then
    return {i, used}
  end
end
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, ARGV[3 * i - 2])
  redis.call('EXPIRE', key, ARGV[3 * i])
end
return 0
"""

# Gives reserved images back, never below zero (a counter that expired meanwhile stays gone).
_RELEASE = """
for i, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key) or '0')
  if used > 0 then
    redis.call('SET', key, math.max(0, used - tonumber(ARGV[i])), 'KEEPTTL')
  end
end
return 0
"""


@dataclass(frozen=True)
class Counter:
    """One counter of a reservation: raise ``key`` by ``amount`` unless that passes ``limit``
    (``None``: no limit, counted anyway); it expires ``ttl_s`` after the last change."""

    key: str
    amount: int
    limit: int | None
    ttl_s: int


class QuotaState:
    """The quota counters in Redis."""

    def __init__(self, *, redis: redis_lib.Redis, key_prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{key_prefix}:quota"
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)

    def images_key(self, *, bulk: bool, day: str, user: str) -> str:
        """The counter of ``user``'s images of one kind on local day ``day``."""
        return f"{self.prefix}:{'bulk' if bulk else 'images'}:{day}:{user}"

    def reserve(self, counters: list[Counter]) -> tuple[Counter, int] | None:
        """Raise every counter, or none: ``None`` when all fit, else the first counter that
        would pass its limit and its current value."""
        if not counters:
            return None
        args: list[int] = []
        for counter in counters:
            limit = -1 if counter.limit is None else counter.limit
            args += [counter.amount, limit, max(1, counter.ttl_s)]
        found = self._reserve(keys=[c.key for c in counters], args=args)
        if not found:
            return None
        index, used = found
        return counters[int(index) - 1], int(used)

    def release(self, counters: list[Counter]) -> None:
        """Give back what :meth:`reserve` took (a request that was not queued after all)."""
        if counters:
            self._release(keys=[c.key for c in counters], args=[c.amount for c in counters])

    def used(self, key: str) -> int:
        """A counter's value now (0 when it does not exist)."""
        value = self.redis.get(key)
        return int(value) if value is not None else 0

    def hit(self, *, window: str, user: str, ttl_s: int) -> int:
        """Count one command of ``user`` in the rate window ``window``; the count so far."""
        key = f"{self.prefix}:rate:{window}:{user}"
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, ttl_s)
            count, _ = pipe.execute()
        return int(count)
