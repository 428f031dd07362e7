"""A check's outcome, and how the doctor prints it: one line each, the fix on the same line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One line of the report. ``fix`` says what to do when ``status`` is warn or fail."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self, *, name_width: int = 8) -> str:
        """``fail  redis     cannot reach ...; fix: ...`` on one line, whatever the detail held."""
        text = " ".join(self.detail.split())
        if self.fix and self.status in ("warn", "fail"):
            text += f"; fix: {' '.join(self.fix.split())}"
        return f"{self.status:<4}  {self.name:<{name_width}}  {text}"


def summary(checks: Iterable[Check]) -> str:
    """The last line: how many checks failed and how many to look at."""
    checks = list(checks)
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    if failed or warned:
        return f"{failed} failed, {warned} to look at, of {len(checks)} checks"
    return f"all {len(checks)} checks passed"


def exit_code(checks: Iterable[Check]) -> int:
    """1 when a check failed (for scripts and health probes), else 0; warnings pass."""
    return 1 if any(c.status == "fail" for c in checks) else 0
