"""What the bot remembers about jobs and image messages, as values: the records kept in
Redis by :class:`bot.state.BotState` and the review outcomes it reads back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from bot.ports import MessageRef
from engine.spec import JobSpec

ImageState = Literal["pending", "approved", "rejected"]


class JobRecord(BaseModel):
    """A job the bot queued: its spec, its thread, and where it came from."""

    spec: JobSpec
    thread: MessageRef
    requester: str  # platform user id
    rerender_of: str | None = None  # message key of the image this job re-renders
    root: str | None = None  # message key of the first image of that lineage
    # A follow-up of an image (bot.followups): what it does and the image's message key.
    followup: Literal["vary", "upscale"] | None = None
    followup_of: str | None = None


class ImageRecord(BaseModel):
    """One posted image message and what it shows."""

    message: MessageRef
    job_id: str
    index: int
    seed: int
    artifact_id: str
    width: int
    height: int
    requester: str
    root: str  # message key of the lineage's first image (itself unless a re-render)
    number: int = 1  # 1-based position shown in the caption ("image 2 of 4")
    of: int = 1


@dataclass(frozen=True)
class ReviewedImage:
    """A rendered image of a job and where review stands on it (pending until posted)."""

    index: int
    seed: int
    artifact_id: str
    state: ImageState
    exports: tuple[str, ...] = ()  # exported files, once approved
    flags: tuple[str, ...] = ()  # the worker's QA reasons (engine.qa); empty: it passed


@dataclass(frozen=True)
class JobOutcome:
    """A job's record and its images; ``images`` is None while it has no result."""

    job_id: str
    record: JobRecord | None
    images: tuple[ReviewedImage, ...] | None


def dumps_ref(ref: MessageRef) -> str:
    """A message ref as a JSON string for a hash field."""
    return json.dumps(ref.to_dict())


def loads_ref(raw: str) -> MessageRef:
    """The inverse of :func:`dumps_ref`."""
    return MessageRef.from_dict(json.loads(raw))
