"""The QA of one job's images as they are kept (``engine.job_images.JobImages.keep``): each
image's scores and flags, near-duplicates against the job's images kept before it, and the
seed of the one re-render the ``rerender`` policy allows a flagged image."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from engine.qa import checks, nsfw
from engine.qa.checks import Flag
from engine.qa.scores import Scores, score
from engine.settings import QaSettings, QaThresholds

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Verdict:
    """One image's scores and flags (none: it passed)."""

    scores: Scores
    flags: list[Flag]
    nsfw: float | None = None

    def record(self) -> dict[str, Any]:
        """As stored with the image (``qa`` in its metadata)."""
        found: dict[str, Any] = {"scores": self.scores.as_dict(), "flags": self.flags}
        if self.nsfw is not None:
            found["scores"]["nsfw"] = round(self.nsfw, 3)
        return found


@dataclass
class JobQa:
    """The QA of one job: ``thresholds`` (global, with its template's over them), the
    policy and, when configured, the NSFW classifier."""

    settings: QaSettings
    thresholds: QaThresholds
    kept: list[tuple[int, int]] = field(default_factory=list)  # (index, phash) kept so far

    @property
    def rerenders(self) -> bool:
        """Whether a flagged image is rendered once more before it is posted."""
        return self.settings.enabled and self.settings.policy == "rerender"

    def assess(self, index: int, image: Any) -> Verdict | None:
        """The verdict on image ``index`` (a PIL image); None when QA is off."""
        if not self.settings.enabled:
            return None
        scores = score(image)
        flags = checks.image_flags(scores, self.thresholds)
        earlier = [(i, h) for i, h in self.kept if i != index]
        duplicate = checks.duplicate_flag(scores.phash, earlier, self.thresholds)
        if duplicate is not None:
            flags.append(duplicate)
        nsfw_score = None
        model = nsfw.classifier(self.settings.nsfw_model, label=self.settings.nsfw_label)
        if model is not None:
            nsfw_score = model.score(image)
            found = checks.nsfw_flag(nsfw_score, self.thresholds)
            if found is not None:
                flags.append(found)
        return Verdict(scores=scores, flags=flags, nsfw=nsfw_score)

    def keep(self, index: int, verdict: Verdict | None) -> None:
        """Remember a kept image's hash: later images of the job are compared with it."""
        if verdict is not None:
            self.kept.append((index, verdict.scores.phash))


def rerender_seed(job_id: str, index: int, seed: int) -> int:
    """The new seed of image ``index``'s one re-render: derived from the job, the image and
    its first seed, so a retried job draws the same one, and not seed + k, which its own
    other images (and the user's next job) use."""
    digest = hashlib.sha256(f"{job_id}:{index}:{seed}:qa".encode()).digest()
    new = int.from_bytes(digest[:4], "big") & MAX_SEED
    return new if new != seed else (new + 1) & MAX_SEED
