"""``/imagine vary JOB#K [--strong] [--n 4]`` and ``/imagine upscale JOB#K [--scale 2|4]``
as values: which image (a job id and the number its caption shows) and how. Pure.

The image is named the way its caption names it: ``3f2a9c1b07de#2`` is image 2 of job
``3f2a9c1b07de``. A job of one image may be named without ``#K``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from bot.ports import FollowupKind
from engine.errors import UserError
from engine.spec import UPSCALE_FACTORS

DEFAULT_VARIATIONS = 4  # Midjourney's V gives four
DEFAULT_SCALE = 2
# A job id as ``JobSpec.id`` allows, then ``#`` and the image's number.
_REFERENCE = re.compile(r"^(?P<job>[A-Za-z0-9_-]{1,64})(?:#(?P<number>[0-9]{1,3}))?$")
_JOB_ID = re.compile(r"^[0-9a-f]{12}$")  # the shape of the ids the bot makes
_SCALE = re.compile(r"^([0-9]{1,3})x?$", re.IGNORECASE)
USAGE: dict[FollowupKind, str] = {
    "vary": "`/imagine vary JOB#K [--strong] [--n 4]` (JOB#K: the job id and the image's "
    "number, as its caption shows them), or react \U0001f500 on the image",
    "upscale": "`/imagine upscale JOB#K [--scale 2|4]` (JOB#K: the job id and the image's "
    "number, as its caption shows them), or react \u2b06\ufe0f on the image",
}


class FollowupUsage(UserError):
    """A follow-up command that cannot be read; the message says what to type."""

    kind = "followup_usage"


@dataclass(frozen=True)
class FollowupRequest:
    """Variations (``count`` of them, ``strong`` or subtle) or an upscale (``scale``) of
    image ``number`` of job ``job_id`` (None: the job's only image)."""

    kind: FollowupKind
    job_id: str
    number: int | None = None
    strong: bool = False
    count: int = DEFAULT_VARIATIONS
    scale: int = DEFAULT_SCALE

    @property
    def preset(self) -> str:
        """The variation preset's name: ``strong`` or ``subtle``."""
        return "strong" if self.strong else "subtle"


def is_followup(words: list[str]) -> bool:
    """Whether ``vary ...`` / ``upscale ...`` (the words after ``/imagine``) is a follow-up
    command rather than a prompt that starts with the word ("upscale photo of a loft"): it
    is when the word stands alone, or the next word names an image (``JOB#K``, a job id)."""
    if not words or words[0].lower() not in ("vary", "upscale"):
        return False
    if len(words) == 1 or words[1].startswith("--"):
        return True
    return "#" in words[1] or bool(_JOB_ID.match(words[1]))


def parse_followup(words: list[str], *, max_count: int) -> FollowupRequest:
    """The request in ``words`` (``["vary", "abc#2", "--strong"]``); :class:`FollowupUsage`
    with the sentence to show when it cannot be read or asks for what is not allowed
    (``max_count``: the most variations one job may have)."""
    kind: FollowupKind = "vary" if words[0].lower() == "vary" else "upscale"
    rest = words[1:]
    if not rest or rest[0].startswith("--"):
        raise FollowupUsage(f"say which image: {USAGE[kind]}")
    found = _REFERENCE.match(rest[0])
    if found is None:
        raise FollowupUsage(f"`{rest[0]}` does not name an image; type {USAGE[kind]}")
    number = int(found["number"]) if found["number"] is not None else None
    if number is not None and number < 1:
        raise FollowupUsage(f"images are numbered from 1; type {USAGE[kind]}")
    request = FollowupRequest(kind=kind, job_id=found["job"], number=number)
    return _options(request, rest[1:], max_count=max_count)


def _options(request: FollowupRequest, words: list[str], *, max_count: int) -> FollowupRequest:
    kind = request.kind
    i = 0
    while i < len(words):
        word = words[i].lower()
        name, _, inline = word.partition("=")
        if name in ("--strong", "--subtle") and kind == "vary" and not inline:
            request = replace(request, strong=name == "--strong")
            i += 1
            continue
        if name in ("--n", "--count", "--scale"):
            takes = "vary" if name != "--scale" else "upscale"
            if kind != takes:
                raise FollowupUsage(_not_for(kind, name))
            value = inline or (words[i + 1] if i + 1 < len(words) else "")
            i += 1 if inline else 2
            if name == "--scale":
                request = replace(request, scale=_scale(value))
            else:
                request = replace(request, count=_count(value, max_count=max_count))
            continue
        raise FollowupUsage(_not_for(kind, words[i]))
    return request


def _count(value: str, *, max_count: int) -> int:
    if not value.isdigit() or not 1 <= int(value) <= max_count:
        raise FollowupUsage(
            f"the number of variations (--n) is from 1 to {max_count}; you typed "
            f"`{value or 'nothing'}`"
        )
    return int(value)


def _scale(value: str) -> int:
    found = _SCALE.match(value)
    factors = " or ".join(str(f) for f in UPSCALE_FACTORS)
    if found is None or int(found[1]) not in UPSCALE_FACTORS:
        raise FollowupUsage(
            f"an upscale is {factors} times the image's size (--scale); you typed "
            f"`{value or 'nothing'}`"
        )
    return int(found[1])


def _not_for(kind: FollowupKind, word: str) -> str:
    if kind == "upscale" and word in ("--n", "--count"):
        return "an upscale makes one image; upscale each image you want on its own"
    return f"`{word}` is not an option of `/imagine {kind}`; type {USAGE[kind]}"
