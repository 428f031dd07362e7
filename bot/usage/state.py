"""The usage ledger as the bot reads and updates it: each image's review outcome, the jobs of
a time range, the totals for ``/metrics``. The keys are the engine's (``engine.ledger``)."""

from __future__ import annotations

import redis as redis_lib

from engine.ledger import Ledger, LedgerEntry, Outcome
from engine.settings import Settings


class UsageState:
    """Typed access to the ledger's keys on one Redis client."""

    def __init__(self, *, redis: redis_lib.Redis, settings: Settings) -> None:
        self.ledger = Ledger(
            redis=redis, key_prefix=settings.key_prefix, ttl_s=settings.ledger_retention_s
        )

    def set_outcome(self, job_id: str, index: int, outcome: Outcome) -> bool:
        """Record a review decision (or its withdrawal: ``pending``) on image ``index``."""
        return self.ledger.set_outcome(job_id, index, outcome)

    def between(self, start: float, end: float) -> list[LedgerEntry]:
        """The jobs that ended in ``[start, end)`` (epoch seconds)."""
        return self.ledger.between(start, end)

    def entry(self, job_id: str) -> LedgerEntry | None:
        """One job's record and outcomes."""
        return self.ledger.entry(job_id)

    def totals(self) -> dict[str, float]:
        """Jobs, images and GPU seconds recorded over all time."""
        return self.ledger.totals()
