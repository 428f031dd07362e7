"""Review by reaction: approve and reject votes per image, re-render with a new seed, export.

Rules (``BotSettings`` / :class:`bot.settings.ReviewPolicy`):

- who may vote: everyone when no approver ids or roles are set, else listed users and
  holders of a listed role; the requester only when ``requester_may_approve``;
- each voter counts once, with their latest reaction; removing a reaction removes the vote;
- one ❌ from a reviewer rejects the image (a veto, until taken back); otherwise
  ``approvals_needed`` ✅ approve it. Approval exports it; leaving "approved" un-exports it;
- 🔁 (the requester or a reviewer) re-renders the image with a new seed, at most
  ``max_rerenders`` times per original image, as is the automatic re-render of a rejected
  image when ``auto_rerender_rejected`` is on;
- 🔀 and ⬆️ (the requester or a reviewer) ask for variations and an upscale of the image:
  handed to ``followup`` (``bot.followups``), which applies the quotas and limits.

A reaction that does not count changes nothing; its author is told why once per thread.
Every reaction is written to the audit log, counted or not. An exported image, and an
approval taken back, are also told to ``approvals`` when one is given (the webhook outbox,
``bot.webhooks``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from bot import texts
from bot.ports import FOLLOWUPS, ChatAdapter, FollowupKind, MessageRef, ReactionEvent, Vote
from bot.records import ImageRecord, ImageState
from bot.review.export import export_image, unexport
from bot.settings import ReviewPolicy
from bot.state import BotState
from bot.usage.state import UsageState
from engine.settings import Limits
from engine.spec import JobSpec, reseeded
from engine.store import ArtifactStore

log = logging.getLogger(__name__)
DEDUPE_TTL_S = 24 * 3600


class Resubmit(Protocol):
    """Queue ``spec``, a re-render of ``image`` asked by ``requester`` (``auto``: the policy's
    automatic re-render of a rejected image), into the image's thread; return the job id."""

    def __call__(self, spec: JobSpec, *, image: ImageRecord, requester: str, auto: bool) -> str: ...


class FollowUp(Protocol):
    """Variations or an upscale (``kind``) of ``image``, asked by ``user`` with ``roles``
    (already allowed here); refusals are the follow-up desk's to tell."""

    def __call__(
        self, *, image: ImageRecord, kind: FollowupKind, user: str, roles: frozenset[str]
    ) -> None: ...


class Approvals(Protocol):
    """Told of each image exported on approval (with its sidecar's content) and of each
    approval taken back; both may be told more than once for one image."""

    def approved(self, image: ImageRecord, *, metadata: dict[str, Any]) -> None: ...

    def withdrawn(self, image: ImageRecord) -> None: ...


class ReviewDesk:
    """Turns reactions into votes, decisions, exports and re-renders."""

    def __init__(
        self,
        *,
        adapter: ChatAdapter,
        state: BotState,
        store: ArtifactStore,
        policy: ReviewPolicy,
        export_dir: Path,
        limits: Limits,
        resubmit: Resubmit,
        approvals: Approvals | None = None,
        usage: UsageState | None = None,
        followup: FollowUp | None = None,
    ) -> None:
        self.adapter = adapter
        self.state = state
        self.store = store
        self.policy = policy
        self.export_dir = export_dir
        self.limits = limits
        self.resubmit = resubmit
        self.approvals = approvals
        self.usage = usage  # the usage ledger's image outcomes (bot.usage)
        self.followup = followup  # 🔀 and ⬆️ (bot.followups); None: they do nothing

    def handle_reaction(self, event: ReactionEvent) -> None:
        """Apply one reaction added or removed on any message (others are ignored)."""
        if event.vote is None:
            return
        # Remembered no longer than the votes it guards (short in tests).
        dedupe_s = min(DEDUPE_TTL_S, self.state.ttl_s)
        if event.event_id and not self.state.once(
            "event", event.platform, event.event_id, ttl_s=dedupe_s
        ):
            return  # the platform delivered this event again
        image = self.state.image(event.message)
        if image is None:
            return  # not one of our image messages
        refusal = self.refusal(event, image)
        self.state.audit(
            platform=event.platform,
            user=event.user,
            message=event.message.key,
            job=image.job_id,
            index=str(image.index),
            vote=event.vote,
            action="add" if event.added else "remove",
            counted="no" if refusal else "yes",
            reason=refusal or "",
        )
        if refusal:
            # The image's record knows its thread; a platform's reaction event may not
            # (Slack's reaction_added names the message only).
            where = image.message
            if event.added and self.state.once(
                "notice", where.platform, where.channel, where.thread_id, event.user
            ):
                self.adapter.notify(
                    channel=where.channel, user=event.user, thread=where.thread_id, text=refusal
                )
            return
        if event.vote == "rerender":
            if event.added:
                self.rerender(image, requester=event.user, auto=False)
            return
        if event.vote in FOLLOWUPS:  # not a vote on approval: a job of its own
            if event.added and self.followup is not None:
                kind: FollowupKind = "vary" if event.vote == "vary" else "upscale"
                self.followup(image=image, kind=kind, user=event.user, roles=event.roles)
            return
        with self.state.image_lock(event.message):
            if event.added:
                self.state.add_vote(event.message, user=event.user, vote=event.vote)
            else:
                self.state.remove_vote(event.message, user=event.user, vote=event.vote)
            self._decide(image, vote=event.vote if event.added else None)

    def may_review(self, user: str, roles: frozenset[str]) -> bool:
        """Whether ``user`` (with ``roles``) is a reviewer under the policy."""
        return (
            self.policy.open
            or user in self.policy.approver_ids
            or bool(roles & self.policy.approver_roles)
        )

    def refusal(self, event: ReactionEvent, image: ImageRecord) -> str | None:
        """Why this reaction does not count, as a sentence for its author; None if it counts."""
        reviewer = self.may_review(event.user, event.roles)
        own = event.user == image.requester
        if event.vote == "rerender":
            if reviewer or own:
                return None
            return (
                "Only the person who asked for an image or a reviewer can re-render it, so "
                "your \U0001f501 did nothing. Run `/imagine` yourself to try another seed."
            )
        if event.vote in FOLLOWUPS:
            if reviewer or own:
                return None
            what = "variations of it" if event.vote == "vary" else "an upscale of it"
            return (
                f"Only the person who asked for an image or a reviewer can ask for {what}, "
                "so your reaction did nothing. Run `/imagine` yourself for images of your own."
            )
        if not reviewer:
            return (
                f"Only {self._reviewers()} can approve or reject images here, so your reaction "
                "was not counted. Ask one of them to review."
            )
        if own and not self.policy.requester_may_approve:
            return (
                "Images need someone other than the person who asked for them to approve or "
                "reject them, so your reaction on your own image was not counted."
            )
        return None

    def rerender(self, image: ImageRecord, *, requester: str, auto: bool) -> str | None:
        """Queue image ``image`` again with a new seed in its thread; None when the lineage
        has used up ``max_rerenders`` (the thread is told)."""
        if self.state.count_rerender(image.root) > self.policy.max_rerenders:
            self.state.uncount_rerender(image.root)
            self._say(
                image,
                f"Image {image.number} has been re-rendered {self.policy.max_rerenders} time(s) "
                "already, the limit here; run `/imagine` again for more.",
            )
            return None
        record = self.state.job(image.job_id)
        if record is None:
            self.state.uncount_rerender(image.root)
            self._say(
                image, f"I no longer have the settings of job `{image.job_id}` to re-render it."
            )
            return None
        spec = rerender_spec(record.spec, image=image, limits=self.limits)
        return self.resubmit(spec, image=image, requester=requester, auto=auto)

    # -- decisions ------------------------------------------------------------------------

    def _decide(self, image: ImageRecord, *, vote: Vote | None = None) -> None:
        votes = self.state.votes(image.message)
        approvers = sorted(u for u, v in votes.items() if v == "approve")
        rejecters = sorted(u for u, v in votes.items() if v == "reject")
        new: ImageState = (
            "rejected"
            if rejecters
            else "approved"
            if len(approvers) >= self.policy.approvals_needed
            else "pending"
        )
        old = self.state.image_state(image.message)
        if new == old:
            if new == "approved":
                self._export(image, approvers)  # refresh the sidecar's approvers
            elif new == "pending" and approvers:
                self._say(
                    image,
                    texts.votes_needed(
                        image, have=len(approvers), need=self.policy.approvals_needed
                    ),
                )
            elif new == "rejected" and vote == "approve":
                self._say(image, texts.still_rejected(image, rejecters=rejecters))
            return
        self.state.set_image_field(image.message, "state", new)
        if self.usage is not None:
            self.usage.set_outcome(image.job_id, image.index, new)
        self.state.set_pending(image, pending=new == "pending")
        if old == "approved":
            unexport(
                [
                    Path(p)
                    for p in json.loads(self.state.image_field(image.message, "export") or "[]")
                ]
            )
            if self.approvals is not None:
                self.approvals.withdrawn(image)
        if new == "approved":
            png, _ = self._export(image, approvers)
            self._say(image, texts.approved(image, approvers=approvers, filename=png.name))
        elif new == "rejected":
            self._say(image, texts.rejected(image, rejecters=rejecters))
            if self.policy.auto_rerender_rejected and self.state.once(
                "auto-rerender", image.message.key
            ):
                self.rerender(image, requester=image.requester, auto=True)
        else:
            self._say(image, texts.reopened(image, was=old))

    def _export(self, image: ImageRecord, approvers: list[str]) -> tuple[Path, Path]:
        record = self.state.job(image.job_id)
        if record is None:
            raise LookupError(f"job {image.job_id} of image {image.message.key} is forgotten")
        paths = export_image(
            store=self.store,
            image=image,
            spec=record.spec,
            approvers=approvers,
            folder=self.export_dir,
        )
        self.state.set_image_field(image.message, "export", json.dumps([str(p) for p in paths]))
        log.info("exported image %s of job %s to %s", image.index, image.job_id, paths[0])
        if self.approvals is not None:
            # On every export, not only the first: queuing is idempotent, and a queuing that
            # failed (Redis away) is made good by the image's next vote.
            self.approvals.approved(image, metadata=json.loads(paths[1].read_text()))
        return paths

    def _say(self, image: ImageRecord, text: str) -> None:
        self.adapter.post(channel=image.message.channel, thread=image.message.thread_id, text=text)

    def _reviewers(self) -> str:
        who = [f"<@{u}>" for u in sorted(self.policy.approver_ids)]
        if self.policy.approver_roles:
            roles = ", ".join(f"`{r}`" for r in sorted(self.policy.approver_roles))
            who.append(f"people with the role {roles}")
        return " or ".join(who) if who else "reviewers"


def rerender_spec(spec: JobSpec, *, image: ImageRecord, limits: Limits) -> JobSpec:
    """One image again with a fresh seed: same prompt and settings, lineage ``job/index``."""
    return reseeded(
        spec, limits=limits, count=1, parent=f"{spec.id}/{image.index}", avoid=image.seed
    )


def thread_of(image: ImageRecord) -> MessageRef:
    """The first message of the image's thread."""
    message = image.message
    return MessageRef(message.platform, message.channel, message.thread_id, None)


__all__ = ["Approvals", "FollowUp", "ReviewDesk", "Vote", "rerender_spec", "thread_of"]
