"""Logging set-up shared by every ``proofroom`` command: one format, and the library
messages known to be harmless silenced once at start.

No torch or transformers import here: library loggers are configured by name, before the
libraries load, so the chat processes stay light.
"""

from __future__ import annotations

import logging
import os

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Library messages that say nothing a user of Proofroom can act on.
_HARMLESS_LOGGERS = (
    # "`CLIPImageProcessor` requires torchvision (not installed); falling back to
    # `CLIPImageProcessorPil`": the PIL processor is what the safety checker needs.
    "transformers.utils.import_utils",
)


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def configure_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Set up the root logger: DEBUG with ``verbose``; WARNING with ``quiet`` (commands
    that print their own progress and result); INFO otherwise (services)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT)
    silence_known_warnings()
    if quiet and not verbose:
        quiet_libraries()


def silence_known_warnings() -> None:
    """Hide the library messages listed above (idempotent)."""
    for name in _HARMLESS_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_libraries() -> None:
    """Keep a command's output to its progress and result: the worker's INFO lines and
    model-loading progress bars belong in a log (``proofroom -v ...`` shows them)."""
    for name in ("rq", "engine", "bot", "httpx", "diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # RQ's Worker.work() sets "rq.worker" back to INFO when it starts; a filter stays.
    worker_log = logging.getLogger("rq.worker")
    if not any(isinstance(f, _WarningsOnly) for f in worker_log.filters):
        worker_log.addFilter(_WarningsOnly())
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
