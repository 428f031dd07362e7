"""Error types shared by the engine and the bot.

A ``UserError`` carries a sentence a chat user can act on; anything else that
escapes is an internal error, logged with the job id and shown to the user as
"something went wrong on our side (job abc123)".
"""

from __future__ import annotations


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


class CancelledError(Exception):
    """Raised inside a render when the job was cancelled; not a failure."""


def internal_message(job_id: str) -> str:
    """The sentence shown for an error that is ours, not the user's."""
    return f"something went wrong on our side (job {job_id}); the team has the details in the logs"
