"""The optional NSFW check: an image-classification model from a local folder
(``PROOFROOM_QA__NSFW_MODEL``), run through transformers' pipeline on the worker's CPU.

Off when no folder is configured. Never downloaded: the pipeline is only ever given an
existing folder, which transformers reads as local files, so a missing or incomplete folder
is an error the worker logs once, not a request to the Hub. Loaded on first use and kept
for the worker's life.
"""

from __future__ import annotations

import logging
import threading
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_lock = threading.Lock()


class NsfwClassifier:
    """The classifier of one folder; :meth:`score` is the probability of ``label``."""

    def __init__(self, folder: Path, *, label: str) -> None:
        from transformers import pipeline  # heavy: only where the check is on

        if not folder.is_dir():  # a name that is no folder would be read as a Hub repo id
            raise FileNotFoundError(f"{folder} is not a folder")
        self.label = label.lower()
        # An existing folder is read as such (config, processor and weights from it alone).
        self._pipe = pipeline("image-classification", model=str(folder), device="cpu")

    def score(self, image: Any) -> float:
        """The score the model gives ``label`` for ``image`` (0 when it is not among the
        model's answers)."""
        answers = self._pipe(image.convert("RGB"), top_k=None)
        return max(
            (float(a["score"]) for a in answers if str(a["label"]).lower() == self.label),
            default=0.0,
        )


@cache
def _classifier(folder: Path, label: str) -> NsfwClassifier | None:
    try:
        return NsfwClassifier(folder, label=label)
    except Exception:  # a broken folder must not fail every job: logged once, check off
        log.exception("the NSFW classifier in %s could not be loaded; the check is off", folder)
        return None


def classifier(folder: Path | None, *, label: str) -> NsfwClassifier | None:
    """The worker's classifier of ``folder``, loaded once; None when none is configured or
    it cannot be loaded."""
    if folder is None:
        return None
    with _lock:  # one load even when two jobs ask at once
        return _classifier(Path(folder), label)
