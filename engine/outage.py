"""Riding out a Redis outage: wait with backoff, say so once when it starts and once when it ends.

:class:`Outage` is what one process knows about its Redis: reachable or not, how many outages
have ended, and how many times a connection was lost and made again (a restart can be that
quick; after one, the worker checks that Redis still has its job). It logs one WARNING line
when the first caller finds Redis gone and one when a caller gets through again, however many
threads were waiting in between. A restart leaves stale connections behind that fail once and
then reconnect at once; those are not outages, so an outage starts when reconnecting fails
too, and a lucky answer on an old connection while Redis shuts down does not end it.

:class:`PatientRetry` is a redis-py retry policy that never gives up on a lost connection: every
command of a client made with :func:`patient_redis` waits (0.1 s, 0.2 s, ... at most 2 s
between tries) until Redis answers, then goes on from where it was. The worker uses one, so
RQ's own bookkeeping (dequeue, job status, results), the job's events and the heartbeat all
survive a restart at any moment without each needing a handler of its own.

Two ways out of waiting: :meth:`Outage.attempt` runs an action that may be skipped (a progress
event, a cancel check) and fails it at once instead; after :meth:`Outage.give_up` (the process
is stopping) every waiting command raises its connection error.

No torch here: the bot uses :class:`Outage` for its event pump too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.redaction import redacted_url

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a lost or refused connection raises in redis-py (BusyLoadingError, a Redis still
# loading its append-only file, is a ConnectionError too).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    redis_lib.ConnectionError,
    redis_lib.TimeoutError,
)


class Outage:
    """Whether Redis answers, as all threads of one process have found it. Thread-safe."""

    def __init__(self, *, name: str, logger: logging.Logger = log, quiet_s: float = 1.0) -> None:
        self.name = name
        self.logger = logger
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._failed_at = float("-inf")
        self._ended = 0
        self._reconnects = 0
        self._ended_at = float("-inf")
        self._gave_up = False
        self._local = threading.local()

    @property
    def down(self) -> bool:
        """Whether the last caller to try found Redis unreachable."""
        return self._down_since is not None

    @property
    def ended(self) -> int:
        """How many outages have ended so far in this process."""
        return self._ended

    @property
    def reconnects(self) -> int:
        """How many times a caller lost its connection and then got through again (an
        outage's end counts too). A change means Redis may have restarted meanwhile."""
        return self._reconnects

    def seconds_since_end(self) -> float:
        """Seconds since the last outage ended (infinite when there was none)."""
        return time.monotonic() - self._ended_at

    def failed(self, error: BaseException) -> None:
        """A caller found Redis gone: the first one after a success logs the outage."""
        with self._lock:
            self._failed_at = time.monotonic()
            if self._down_since is not None:
                return
            self._down_since = self._failed_at
        self.logger.warning(
            "%s: Redis is unreachable (%s); waiting for it, retrying with backoff",
            self.name,
            error,
        )

    def recovered(self, *, reconnected: bool = False) -> None:
        """A caller got an answer: the first one after an outage logs its end. The answer
        counts if the caller ``reconnected`` (it failed, then got through) or if nobody has
        failed for ``quiet_s``; else it may come from an old connection of a Redis that is
        shutting down."""
        if reconnected:
            with self._lock:
                self._reconnects += 1
        if self._down_since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._down_since is None:
                return
            if not reconnected and time.monotonic() - self._failed_at < self.quiet_s:
                return
            seconds = time.monotonic() - self._down_since
            self._down_since = None
            self._ended += 1
            self._reconnects += 1  # whoever got through first may not have had to reconnect
            self._ended_at = time.monotonic()
        self.logger.warning("%s: Redis answers again after %.1f s", self.name, seconds)

    def attempt(self, action: Callable[[], T], *, default: T) -> T:
        """Best effort: ``action()``, or ``default`` without waiting while Redis is known to be
        away or when ``action`` loses the connection (which starts an outage)."""
        if self.down:
            return default
        self._local.impatient = True
        try:
            result = action()
        except CONNECTION_ERRORS as exc:
            self.failed(exc)
            return default
        finally:
            self._local.impatient = False
        self.recovered()
        return result

    @property
    def impatient(self) -> bool:
        """Whether this thread is inside :meth:`attempt` (its commands must not wait)."""
        return bool(getattr(self._local, "impatient", False))

    def give_up(self) -> None:
        """Stop waiting for Redis from now on: the process is stopping."""
        self._gave_up = True

    @property
    def gave_up(self) -> bool:
        """Whether :meth:`give_up` was called."""
        return self._gave_up


class PatientRetry(Retry):
    """redis-py retry policy: retry a lost connection forever with capped exponential backoff,
    reporting to ``outage``. One instance is shared by all connections of a client (redis-py
    deep-copies the policy into each connection; sharing keeps one outage, one log line)."""

    def __init__(self, *, outage: Outage, base_s: float = 0.1, cap_s: float = 2.0) -> None:
        super().__init__(backoff=NoBackoff(), retries=-1)
        self.outage = outage
        self.base_s = base_s
        self.cap_s = cap_s

    def __deepcopy__(self, memo: dict[int, Any]) -> PatientRetry:
        return self

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """``do()`` until it gets through. ``fail`` (redis-py's: drop the connection) runs
        after each failure; for a pipeline that was WATCHing it raises ``WatchError``, which
        ends the retry so that the caller runs its transaction again."""
        failures = 0
        while True:
            try:
                result = do()
            except self._supported_errors as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if failures == 1:
                    continue  # a connection left over from before a restart: reconnect now
                if self.outage.impatient or self.outage.gave_up:
                    raise
                self.outage.failed(error)
                time.sleep(min(self.cap_s, self.base_s * 2 ** min(failures - 2, 16)))
                continue
            self.outage.recovered(reconnected=failures > 0)
            return result


def patient_redis(url: str, *, outage: Outage, connect_timeout_s: float = 5.0) -> redis_lib.Redis:
    """A client whose commands wait out a Redis outage (see :class:`PatientRetry`). A connect
    that hangs (a host gone from the network rather than a refused port) counts as a failed
    try after ``connect_timeout_s``, instead of the operating system's minutes."""
    return redis_lib.Redis.from_url(
        url, retry=PatientRetry(outage=outage), socket_connect_timeout=connect_timeout_s
    )


def login_refused(url: str, *, timeout_s: float = 5.0) -> str | None:
    """The sentence to show when Redis at ``url`` refuses the login (a wrong user name or
    password: waiting, as for an outage, would never end), else None: Redis let us in, or
    did not answer at all (an outage, which the process waits out)."""
    client = redis_lib.Redis.from_url(url, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except redis_lib.AuthenticationError as exc:
        return refused_login(url, exc)
    except CONNECTION_ERRORS:
        return None
    except redis_lib.ResponseError:  # e.g. still loading its data: Redis answered, not a refusal
        return None
    finally:
        client.close()
    return None


def refused_login(url: str, error: Exception) -> str:
    """What to tell whoever started a process whose Redis login was refused (no password)."""
    return (
        f"Redis at {redacted_url(url)} refused the login ({error}); "
        "check the user name and password in REDIS_URL"
    )
