"""Approve and reject images from the API: a vote by the key's user, counted by the
review desk (``bot.review``) exactly like a reaction, so the same policy, decision, export
(PNG + sidecar), audit log and usage outcome follow.

Where the vote lands:

- the image was posted in a chat thread (a key with a review channel, its platform's bot
  posted it): on that message, next to the reactions there, as the key's user (a user of
  that platform);
- otherwise on the image itself: the API records it as an image message of platform
  ``api`` (``api:<key id>:<job>-<index>``) the first time it is voted on.

``serve`` posts nothing to chat: the desk's notes to the thread go to :class:`Silent`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from bot.api.jobs import ApiJobs, JobNotFound
from bot.api.keys import ApiKey
from bot.ports import MessageRef, ReactionEvent
from bot.records import ImageRecord, JobRecord
from bot.review.desk import ReviewDesk
from bot.state import BotState
from bot.usage.state import UsageState
from engine.errors import UserError
from engine.spec import JobSpec

ApiVote = Literal["approve", "reject"]


class VoteRefused(UserError):
    """The review policy does not count this vote (a 403); ``message`` says why."""

    kind = "vote_refused"


class NotPostedYet(UserError):
    """The image's review thread has not shown it yet (a 409): try again shortly."""

    kind = "not_posted"


class ApiVoteResult(BaseModel):
    """An image's review state after a vote; ``exported``: the file names of the approved
    image and its sidecar in the export folder (empty unless approved)."""

    id: str
    job_id: str
    index: int
    state: Literal["pending", "approved", "rejected"]
    exported: list[str]


class Silent:
    """The chat port for votes from the API: every post goes nowhere (``serve`` posts
    nothing to chat; the API answers with the image's state instead)."""

    def __init__(self, platform: str) -> None:
        self.platform = platform

    def post(self, *, channel: str, text: str, thread: str | None = None, **_: Any) -> MessageRef:
        return MessageRef(self.platform, channel, "", thread)

    def edit(self, *, message: MessageRef, text: str, **_: Any) -> None:
        return None

    def upload(self, *, channel: str, thread: str | None, **_: Any) -> MessageRef:
        return MessageRef(self.platform, channel, "", thread)

    def notify(self, **_: Any) -> None:
        return None

    def upload_private(self, **_: Any) -> None:
        return None


class ApiVotes:
    """Votes of API keys on their jobs' images."""

    def __init__(self, *, jobs: ApiJobs, state: BotState, export_dir: Path) -> None:
        self.jobs = jobs
        self.state = state
        self.export_dir = export_dir

    def vote(self, image_id: str, *, key: ApiKey, vote: ApiVote) -> ApiVoteResult:
        """Count ``vote`` by ``key``'s user on image ``image_id`` (an artifact id of one of
        its jobs' results); :class:`JobNotFound`, :class:`VoteRefused`, :class:`NotPostedYet`."""
        job_id = self.jobs.job_of_artifact(image_id, key=key)
        spec = self.jobs.spec(job_id, key=key)
        result = self.jobs.result(job_id, key=key)
        image = (
            next((i for i in result.images if i.artifact_id == image_id), None) if result else None
        )
        if image is None:
            raise JobNotFound(f"no image {image_id}")  # an input image: nothing to vote on
        record = self._record(spec, key=key, index=image.index)
        platform = record.message.platform
        desk = self._desk(platform, resubmit=lambda s: self.jobs.enqueue(s, key=key).id)
        event = ReactionEvent(platform=platform, user=key.user, message=record.message, vote=vote)
        refusal = desk.refusal(event, record)
        if refusal is not None:
            raise VoteRefused(refusal)
        desk.handle_reaction(event)
        exported = json.loads(self.state.image_field(record.message, "export") or "[]")
        return ApiVoteResult(
            id=image_id,
            job_id=job_id,
            index=image.index,
            state=self.state.image_state(record.message),
            exported=[Path(p).name for p in exported],
        )

    def _record(self, spec: JobSpec, *, key: ApiKey, index: int) -> ImageRecord:
        """The image's record: its chat message's, or one of platform ``api``."""
        if spec.origin.get("platform") != "api":
            job = self.state.job(spec.id)
            found = self.state.posted_images(job).get(index) if job is not None else None
            if found is None:
                raise NotPostedYet(
                    f"image {index + 1} of job `{spec.id}` is not in its review thread yet; "
                    "try again in a moment"
                )
            return found
        ref = MessageRef("api", key.id, f"{spec.id}-{index}", spec.id)
        found = self.state.image(ref)
        if found is not None:
            return found
        result = self.jobs.result(spec.id, key=key)
        assert result is not None  # the caller found the image in it
        image = next(i for i in result.images if i.index == index)
        thread = MessageRef("api", key.id, spec.id, None)
        job_record = JobRecord(spec=spec, thread=thread, requester=key.user)
        self.state.add_job(job_record)
        self.state.close_job(job_record)  # nothing to deliver: only the record is wanted
        record = ImageRecord(
            message=ref,
            job_id=spec.id,
            index=index,
            seed=image.seed,
            artifact_id=image.artifact_id,
            width=image.width,
            height=image.height,
            requester=key.user,
            root=ref.key,
            number=index + 1,
            of=spec.count,
        )
        self.state.add_image(record)
        return record

    def _desk(self, platform: str, *, resubmit: Callable[[JobSpec], str]) -> ReviewDesk:
        jobs = self.jobs
        return ReviewDesk(
            adapter=Silent(platform),
            state=self.state,
            store=jobs.store,
            policy=jobs.bot_settings,
            export_dir=self.export_dir,
            limits=jobs.settings.limits,
            # An automatic re-render of a rejected image (the policy's) is the key's job.
            resubmit=lambda spec, **_: resubmit(spec),
            usage=UsageState(redis=jobs.redis, settings=jobs.settings),
        )


__all__ = ["ApiVote", "ApiVoteResult", "ApiVotes", "NotPostedYet", "Silent", "VoteRefused"]
