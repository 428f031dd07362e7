"""Variations and upscales of a posted image (Midjourney's V and U), from a reaction (🔀,
⬆️, routed here by ``bot.review``) or a command (``/imagine vary JOB#K``, ``/imagine
upscale JOB#K``).

Either way the job opens in the image's thread with a card line, shows its progress there
and posts its images there, reviewable like any other; their captions name the parent
image. The rules:

- who: the person who asked for the image, or a reviewer (as for 🔁);
- the user's quotas are reserved as for ``/imagine`` and given back when nothing was queued;
- the spec's own limits apply (``engine.derive``): a refusal is a sentence, in the thread
  for a reaction, as the reply for a command;
- a reaction repeated by the same user on the same image within ``REPEAT_S`` (a platform
  re-delivery under a new event id, a quick remove and add) queues nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot import texts
from bot.followups.request import FollowupRequest, FollowupUsage, is_followup, parse_followup
from bot.jobs.resolve import JobResolver
from bot.ports import ChatAdapter, CommandEvent, FollowupKind, MessageRef, requester_key
from bot.quotas.desk import QuotaDesk
from bot.records import ImageRecord, JobRecord
from bot.review.desk import thread_of
from bot.state import BotState
from engine.derive import upscale_spec, variation_spec
from engine.errors import UserError
from engine.spec import JobSpec

log = logging.getLogger(__name__)
REPEAT_S = 60  # the same reaction by the same user on the same image: once a minute
TRY_AGAIN = "something went wrong on our side and nothing was queued; please try again in a minute"


class QueueFollowup(Protocol):
    """Queue ``spec`` into ``thread`` as a follow-up of the image whose message key is
    ``followup_of``; return the job id (the service's ``submit``)."""

    def __call__(
        self,
        spec: JobSpec,
        *,
        thread: MessageRef,
        requester: str,
        followup: FollowupKind,
        followup_of: str,
    ) -> str: ...


MayReview = Callable[[str, frozenset[str]], bool]
Position = Callable[[str], int | None]


@dataclass(frozen=True)
class Queued:
    """A follow-up job that was queued: its spec and, when no worker serves its model now,
    the sentence saying it waits (``bot.jobs.routing``)."""

    spec: JobSpec
    waiting: str | None


class FollowupDesk:
    """Queues variations and upscales of posted images (see the module docstring)."""

    def __init__(
        self,
        *,
        adapter: ChatAdapter,
        state: BotState,
        resolver: JobResolver,
        quotas: QuotaDesk,
        submit: QueueFollowup,
        may_review: MayReview,
        position: Position,
    ) -> None:
        self.adapter = adapter
        self.state = state
        self.resolver = resolver
        self.quotas = quotas
        self.submit = submit
        self.may_review = may_review
        self.position = position

    # -- entries ------------------------------------------------------------------------

    def command(self, event: CommandEvent) -> str | None:
        """The reply to ``/imagine vary ...`` / ``/imagine upscale ...``; None when the words
        are a prompt that starts with "vary" or "upscale" (nothing done)."""
        words = event.text.split()
        if words and words[0].lower() in ("/imagine", "imagine"):
            words = words[1:]
        if not is_followup(words):
            return None
        try:
            request = parse_followup(words, max_count=self.resolver.limits.max_count)
            image = self.find(request, platform=event.platform, channel=event.channel)
            queued = self.start(image, request, user=event.user, roles=event.roles)
        except UserError as exc:  # it may quote what was typed: user text
            return texts.escape(exc.message)
        spec = queued.spec
        position = self.position(spec.id)
        place = f"place {position} in line" if position else "starting now"
        if queued.waiting:
            place = f"{place}, {queued.waiting}"
        if request.kind == "vary":
            what = f"{spec.count} variation(s) ({request.preset}) of image {image.number}"
        else:
            what = f"image {image.number} upscaled {spec.scale}x to {spec.width}x{spec.height}"
        return (
            f"Queued job `{spec.id}`: {what} of job `{image.job_id}`, {place}. "
            "The result will appear in the image's thread."
        )

    def react(
        self, *, image: ImageRecord, kind: FollowupKind, user: str, roles: frozenset[str]
    ) -> None:
        """🔀 or ⬆️ on ``image`` by ``user`` (already allowed by the review desk): the
        default follow-up (4 subtle variations, a 2x upscale); a refusal is said in the
        image's thread."""
        marker = ("followup", kind, image.message.key, user)
        if not self.state.once(*marker, ttl_s=REPEAT_S):
            return  # the same reaction again within a minute: one job is enough
        try:
            self.start(
                image, FollowupRequest(kind=kind, job_id=image.job_id), user=user, roles=roles
            )
        except UserError as exc:
            self.state.forget_once(*marker)  # nothing was queued: trying again may work
            self._say(image, f"{texts.mention(user)} {texts.sentence(texts.escape(exc.message))}")
        except Exception:
            self.state.forget_once(*marker)
            raise

    # -- the steps ------------------------------------------------------------------------

    def find(self, request: FollowupRequest, *, platform: str, channel: str) -> ImageRecord:
        """The posted image ``request`` names, in ``channel``; ``UserError`` saying what to
        type when there is none."""
        record = self.state.job(request.job_id)
        if record is None or (record.thread.platform, record.thread.channel) != (
            platform,
            channel,
        ):
            raise FollowupUsage(
                f"there is no job `{request.job_id}` with images in this channel; type the "
                f"command in the image's channel, with the job id of its caption: "
                f"`/imagine {request.kind} JOB#K`"
            )
        images = list(self.state.posted_images(record).values())
        if not images:
            raise FollowupUsage(
                f"job `{record.spec.id}` has no images in its thread yet; wait for them, or "
                f"`/imagine repost {record.spec.id}` if they could not be posted"
            )
        if request.number is None and len(images) == 1:
            return images[0]
        if request.number is None:
            numbers = ", ".join(f"`{record.spec.id}#{i.number}`" for i in images)
            raise FollowupUsage(f"job `{record.spec.id}` has several images; name one: {numbers}")
        for image in images:
            if image.number == request.number:
                return image
        shown = ", ".join(str(i.number) for i in images) or "none posted yet"
        raise FollowupUsage(
            f"job `{record.spec.id}` has no image {request.number} in its thread (its images: "
            f"{shown}); type `/imagine {request.kind} {record.spec.id}#K` with one of them"
        )

    def start(
        self, image: ImageRecord, request: FollowupRequest, *, user: str, roles: frozenset[str]
    ) -> Queued:
        """Check, reserve, open the card in the image's thread and queue; ``UserError``
        with the sentence when the follow-up is refused (nothing is then queued)."""
        if user != image.requester and not self.may_review(user, roles):
            raise UserError(
                "only the person who asked for an image or a reviewer can ask for its "
                f"{'variations' if request.kind == 'vary' else 'upscale'}; run `/imagine` "
                "yourself for images of your own"
            )
        record = self.state.job(image.job_id)
        if record is None:
            raise UserError(f"I no longer have the settings of job `{image.job_id}`")
        spec = self.spec(record, image, request).model_copy(
            update={"requested_by": requester_key(image.message.platform, user)}
        )
        waiting = self.resolver.route([spec.model])
        reservation = self.quotas.reserve([spec], requester=user, roles=roles)
        thread = thread_of(image)
        try:
            if request.kind == "vary":
                card = texts.vary_card(spec, image=image, requester=user, preset=request.preset)
            else:
                card = texts.upscale_card(spec, image=image, requester=user)
            opened = self.adapter.post(channel=thread.channel, thread=thread.id, text=card)
        except BaseException:
            self.quotas.release(reservation)
            raise
        try:
            self.submit(
                spec,
                thread=thread,
                requester=user,
                followup=request.kind,
                followup_of=image.message.key,
            )
        except Exception:
            log.exception("follow-up job %s could not be queued", spec.id)
            self.quotas.release(reservation)
            self._tidy(lambda: self.adapter.edit(message=opened, text=texts.not_queued(spec.id)))
            raise UserError(TRY_AGAIN) from None
        return Queued(spec=spec, waiting=waiting)

    def spec(self, record: JobRecord, image: ImageRecord, request: FollowupRequest) -> JobSpec:
        """The variations or upscale spec for ``image`` of ``record`` (``engine.derive``);
        ``SpecError`` when the limits refuse it."""
        limits = self.resolver.limits
        parent = record.spec
        if request.kind == "vary":
            return variation_spec(
                parent,
                index=image.index,
                artifact_id=image.artifact_id,
                limits=limits,
                strength="strong" if request.strong else "subtle",
                count=request.count,
                width=image.width,
                height=image.height,
            )
        return upscale_spec(
            parent,
            index=image.index,
            artifact_id=image.artifact_id,
            limits=limits,
            scale=request.scale,
            tile_size=self.tile_size(parent.model, image, scale=request.scale),
            width=image.width,
            height=image.height,
        )

    def tile_size(self, model: str, image: ImageRecord, *, scale: int) -> int:
        """The model's native size (its catalog entry's default width and height), no larger
        than the output: the tiled pass renders at the size the model was trained on."""
        entry = self.resolver.catalog.models.get(model)
        if entry is None:
            raise UserError(f"model `{model}` of this image is no longer in the catalog")
        native = min(entry.width, entry.height, image.width * scale, image.height * scale)
        return max(8, native // 8 * 8)

    # -- helpers --------------------------------------------------------------------------

    def _say(self, image: ImageRecord, text: str) -> None:
        self.adapter.post(channel=image.message.channel, thread=image.message.thread_id, text=text)

    @staticmethod
    def _tidy(action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            log.warning("could not tidy up after a failure", exc_info=True)
