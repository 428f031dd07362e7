"""Error types shared by the engine and the bot.

A ``UserError`` carries a sentence a chat user can act on; anything else that
escapes is an internal error, logged with the job id and shown to the user as
"something went wrong on our side (job abc123)".
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """An error caused by the request; ``message`` is shown to the user as is."""

    kind = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SpecError(UserError):
    """A job specification is outside the configured limits or malformed."""

    kind = "invalid_spec"


class CatalogError(UserError):
    """A name does not resolve in the catalog (template, model, LoRA, variable)."""

    kind = "unknown_name"


class MissingVariables(CatalogError):
    """A template was used without a value for each required variable. The message gives a
    chat example; ``template`` and ``missing`` let another front end (a CLI) say it in its
    own syntax."""

    def __init__(self, message: str, *, template: str, missing: list[str]) -> None:
        super().__init__(message)
        self.template = template
        self.missing = missing


class ModelUnavailableError(UserError):
    """A catalog model (or ControlNet) whose weights this worker cannot get: not in the local
    Hugging Face cache while the Hub is offline, or its repo or folder does not exist."""

    kind = "model_unavailable"


class BlankImageError(UserError):
    """Every image of a job came out non-finite (NaN), even after its retry in full precision;
    delivering it would post a black picture as a success."""

    kind = "blank_image"


class OutOfMemory(UserError):
    """A job needed more memory than the device has: too many or too large images. Not
    retried: the same job on the same worker would run out again."""

    kind = "out_of_memory"


class StorageFull(UserError):
    """The artifact store had no room for a job's images (disk or quota full, or a file
    size limit). Not the user's doing, but theirs to retry once an admin has made room."""

    kind = "storage_full"


class CancelledError(Exception):
    """Raised inside a render when the job was cancelled; not a failure."""


def internal_message(job_id: str) -> str:
    """The sentence shown for an error that is ours, not the user's."""
    return f"something went wrong on our side (job {job_id}); the team has the details in the logs"


OUT_OF_MEMORY_MESSAGE = "this job is too large for this GPU: try fewer images or a smaller size"

# What an allocator says when it refuses (torch on CPU: "DefaultCPUAllocator: can't allocate
# memory"; CUDA, ROCm and MPS: "... out of memory"; Windows' CRT: "not enough memory").
_OUT_OF_MEMORY_TEXT = ("can't allocate memory", "out of memory", "not enough memory")
# ENOSPC: disk full; EDQUOT: quota spent; EFBIG: over a file size limit (RLIMIT_FSIZE, a
# file system's maximum file size).
_STORAGE_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def storage_full_message(job_id: str) -> str:
    """The sentence shown when a job's images could not be stored for lack of room."""
    return (
        "the image store is full, so this job's images could not be saved; "
        f"ask an admin to free space, then try again (job {job_id})"
    )


def exhaustion_error(exc: BaseException, *, job_id: str) -> UserError | None:
    """The user error that ``exc`` stands for when a resource ran out: memory
    (:class:`OutOfMemory`: ``torch.OutOfMemoryError``, the CPU allocator's ``RuntimeError``,
    Python's ``MemoryError``) or room in the store (:class:`StorageFull`: ``ENOSPC``,
    ``EDQUOT``, ``EFBIG``); None for anything else. Causes are followed, so a wrapped one
    counts too. No torch import: the bot imports this module."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_out_of_memory(current):
            return OutOfMemory(OUT_OF_MEMORY_MESSAGE)
        if isinstance(current, OSError) and current.errno in _STORAGE_FULL_ERRNOS:
            return StorageFull(storage_full_message(job_id))
        current = current.__cause__
    return None


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):  # Python's own, numpy's _ArrayMemoryError
        return True
    # torch.OutOfMemoryError (torch.cuda.OutOfMemoryError is the same class), by name: no
    # torch here.
    if any(
        cls.__name__ == "OutOfMemoryError" and cls.__module__.startswith("torch")
        for cls in type(exc).__mro__
    ):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(part in text for part in _OUT_OF_MEMORY_TEXT)
