"""The quota checks the service and the workflow desks make before anything is queued.

- :meth:`QuotaDesk.admit`, first for every command: the channel allow list, then the rate
  limit. A refusal is a sentence for the user.
- :meth:`QuotaDesk.reserve`, after a request resolved and before its thread is opened or
  its jobs queued: the jobs-in-flight caps (interactive jobs only) and the images of the
  day, reserved for all of the request's jobs at once or refused whole
  (:class:`QuotaExceeded`, a ``UserError`` like ``bot.jobs.routing``'s refusal). Images
  count when they are queued; a job that is cancelled or fails does not give them back
  (it may have used the GPU; the count is what was asked for). A request that is refused
  later, before anything was queued (its thread could not be opened), does:
  :meth:`QuotaDesk.release`.

Admins (``BotSettings.is_admin``) are exempt from every per-user limit, not from the allow
list: the channels are where the bot works at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot import texts
from bot.ports import CommandEvent, requester_key
from bot.quotas.policy import Day, Quotas, day_of
from bot.quotas.state import Counter, QuotaState
from engine.errors import UserError
from engine.queue import JobQueue
from engine.spec import JobSpec

# Counters live this long past their day's end: a day key is never reused, so this is only
# how long yesterday's count lingers (and room for a clock slightly behind Redis's).
DAY_TTL_MARGIN_S = 3600
IsAdmin = Callable[[str, frozenset[str]], bool]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock (tests freeze it with time-machine)."""
    return datetime.now(UTC)


class QuotaExceeded(UserError):
    """A request over a per-user limit: nothing was queued. ``limit``: the setting's name."""

    kind = "quota"

    def __init__(self, message: str, *, limit: str, used: int, allowed: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.used = used
        self.allowed = allowed


@dataclass(frozen=True)
class Reservation:
    """What :meth:`QuotaDesk.reserve` took; hand it to :meth:`QuotaDesk.release` when the
    request is not queued after all."""

    counters: list[Counter] = field(default_factory=list)


class QuotaDesk:
    """The checks of one bot process (see the module docstring)."""

    def __init__(
        self,
        *,
        quotas: Quotas,
        allowed_channels: frozenset[str],
        zone: ZoneInfo,
        state: QuotaState,
        queue: JobQueue,
        is_admin: IsAdmin,
        clock: Clock = utc_now,
    ) -> None:
        self.quotas = quotas
        self.allowed_channels = allowed_channels
        self.zone = zone
        self.state = state
        self.queue = queue
        self.is_admin = is_admin
        self.clock = clock

    # -- every command --------------------------------------------------------------------

    def allows(self, *, channel: str, guild: str | None = None) -> bool:
        """Whether the bot answers in ``channel`` (of ``guild`` on Discord): always when the
        allow list is empty, else when it names the channel or the guild."""
        if not self.allowed_channels:
            return True
        return channel in self.allowed_channels or (
            guild is not None and guild in self.allowed_channels
        )

    def admit(self, event: CommandEvent) -> str | None:
        """The sentence refusing ``event`` (a channel not on the allow list, too many
        commands this minute), or ``None`` to go on. Counts the command for the rate limit."""
        if not self.allows(channel=event.channel, guild=event.guild):
            return texts.channel_not_allowed(event.channel)
        limit = self.quotas.commands_per_minute
        if limit is None or self.is_admin(event.user, event.roles):
            return None
        now = self.clock()
        window = now.strftime("%Y%m%d%H%M")
        count = self.state.hit(
            window=window, user=requester_key(event.platform, event.user), ttl_s=120
        )
        if count <= limit:
            return None
        wait_s = 60 - now.second - now.microsecond / 1e6
        return texts.rate_limited(limit=limit, wait=_duration(wait_s))

    # -- before queueing ------------------------------------------------------------------

    def reserve(
        self,
        specs: Iterable[JobSpec],
        *,
        requester: str,
        roles: frozenset[str] = frozenset(),
        who: str = "you",
    ) -> Reservation:
        """Reserve the images of ``specs`` (one request: a command, a batch, a calendar
        week) for ``requester`` (a chat user id, or ``calendar``), each job by its priority;
        :class:`QuotaExceeded` and nothing reserved when one limit would be passed. ``who``
        names the requester in the sentence ("you", "the content calendars")."""
        specs = list(specs)
        if not specs or self.is_admin(requester, roles):
            return Reservation()
        user = specs[0].requested_by or requester
        interactive = [s for s in specs if s.priority != "bulk"]
        if interactive:
            self._check_in_flight(user, new=len(interactive))
        now = self.clock()
        day = day_of(now, self.zone)
        ttl_s = math.ceil(day.seconds_left(now)) + DAY_TTL_MARGIN_S
        counters = []
        for bulk, limit in (
            (False, self.quotas.images_per_day),
            (True, self.quotas.bulk_images_per_day),
        ):
            amount = sum(s.count for s in specs if (s.priority == "bulk") == bulk)
            if amount:
                key = self.state.images_key(bulk=bulk, day=day.key, user=user)
                counters.append(Counter(key=key, amount=amount, limit=limit, ttl_s=ttl_s))
        refused = self.state.reserve(counters)
        if refused is None:
            return Reservation(counters)
        counter, used = refused
        bulk = counter.key == self.state.images_key(bulk=True, day=day.key, user=user)
        assert counter.limit is not None  # only a limit refuses
        raise QuotaExceeded(
            texts.over_daily_images(
                who=who,
                used=used,
                limit=counter.limit,
                wanted=counter.amount,
                bulk=bulk,
                resets=self._resets(day, now),
            ),
            limit="bulk_images_per_day" if bulk else "images_per_day",
            used=used,
            allowed=counter.limit,
        )

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back: its request was not queued after all."""
        self.state.release(reservation.counters)

    def _check_in_flight(self, user: str, *, new: int) -> None:
        """The caps on a user's interactive jobs in flight. Read from the queue's index of
        the user's jobs, not reserved: two commands in the same instant may both pass."""
        concurrent, waiting = self.quotas.concurrent_jobs, self.quotas.queued_interactive_jobs
        if concurrent is None and waiting is None:
            return
        jobs = [j for j in self.queue.jobs_for(user) if j.spec.priority != "bulk"]
        queued = sum(1 for j in jobs if j.state == "queued")
        if concurrent is not None and len(jobs) + new > concurrent:
            raise QuotaExceeded(
                texts.too_many_jobs(have=len(jobs), limit=concurrent, waiting_only=False),
                limit="concurrent_jobs",
                used=len(jobs),
                allowed=concurrent,
            )
        if waiting is not None and queued + new > waiting:
            raise QuotaExceeded(
                texts.too_many_jobs(have=queued, limit=waiting, waiting_only=True),
                limit="queued_interactive_jobs",
                used=queued,
                allowed=waiting,
            )

    def _resets(self, day: Day, now: datetime) -> str:
        return f"00:00 {self.zone.key} (in {_duration(day.seconds_left(now))})"


def _duration(seconds: float) -> str:
    """``5 h 12 min``, ``12 min``, ``23 s``: how long until a count resets."""
    seconds = max(1, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
