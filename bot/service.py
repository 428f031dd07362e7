"""The rules of the chat side, behind the :class:`~bot.ports.ChatAdapter` port.

An adapter calls three things: :meth:`BotService.handle_command` for ``/imagine`` (it
returns the immediate reply), :meth:`BotService.handle_reaction` for reactions, and
:meth:`BotService.pump_until` (or :meth:`BotService.pump` in a loop of its own) to bring job
events into threads. Everything the service remembers is in Redis (``bot.state``), so a new
``BotService`` after a restart carries on where the old one stopped.

The event loop itself, with its retries and its way through a Redis outage, is
``bot.jobs.pump``; the workflows (``bot.batch``, ``bot.calendars``) and review
(``bot.review``) are desks built here with the collaborators each uses.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from zoneinfo import ZoneInfo

import redis as redis_lib

from bot import texts
from bot.batch.desk import BatchDesk
from bot.batch.report import BatchReport
from bot.batch.state import BatchState
from bot.calendars.desk import CalendarDesk
from bot.calendars.model import Calendar, load_calendars
from bot.calendars.scheduler import Clock, utc_now
from bot.calendars.state import CalendarState
from bot.followups.desk import FollowupDesk
from bot.grammar.parse import BadCommand, MetaCommand, parse
from bot.grammar.tokens import first_word
from bot.jobs import meta
from bot.jobs.delivery import Delivery
from bot.jobs.followed import FollowedJobs
from bot.jobs.inputs import post_inputs
from bot.jobs.pump import EventPump
from bot.jobs.resolve import JobResolver
from bot.jobs.routing import routing_for
from bot.ports import (
    ChatAdapter,
    CommandEvent,
    FollowupKind,
    MessageRef,
    ReactionEvent,
    requester_key,
)
from bot.quotas.desk import QuotaDesk, Reservation
from bot.quotas.state import QuotaState
from bot.records import ImageRecord, JobRecord
from bot.review.desk import ReviewDesk, thread_of
from bot.settings import BotSettings
from bot.state import BotState
from bot.usage.desk import UsageDesk, UsageFigures
from bot.usage.report import Rates
from bot.usage.state import UsageState
from bot.webhooks import WebhookDeliverer, WebhookState, WebhookTarget
from engine.catalog import Catalog
from engine.errors import UserError
from engine.events import EventStream
from engine.model_folders import load_catalog
from engine.outage import Outage
from engine.queue import JobQueue
from engine.reloads import CatalogReloads
from engine.settings import Settings
from engine.spec import JobSpec
from engine.store import ArtifactStore, store_from_settings

log = logging.getLogger(__name__)

TRY_AGAIN = "something went wrong on our side and nothing was queued; please try again in a minute"


class BotService:
    """The rules: resolve and queue commands, deliver job events, count reactions."""

    def __init__(
        self,
        *,
        adapter: ChatAdapter,
        queue: JobQueue,
        events: EventStream,
        catalog: Catalog,
        store: ArtifactStore,
        settings: Settings,
        bot_settings: BotSettings,
        redis: redis_lib.Redis,
    ) -> None:
        self.adapter = adapter
        self.queue = queue
        self.events = events
        self.catalog = catalog
        self.store = store
        self.settings = settings
        self.bot_settings = bot_settings
        self.reloads = CatalogReloads(
            redis=redis, settings=settings, catalog=catalog, load=lambda: load_catalog(settings)
        )
        # Defaults worked out once: every desk that queues jobs resolves them through this.
        self.resolver = JobResolver(
            catalog=catalog,
            settings=settings,
            bot_settings=bot_settings,
            store=store,
            routing=routing_for(redis=redis, settings=settings, catalog=catalog),
        )
        ttl_s = bot_settings.state_retention_s
        self.state = BotState(redis=redis, key_prefix=settings.key_prefix, ttl_s=ttl_s)
        # Checked before anything is queued, by this service and by the workflow desks.
        self.quotas = QuotaDesk(
            quotas=bot_settings.quotas,
            allowed_channels=bot_settings.allowed_channels,
            zone=ZoneInfo(bot_settings.timezone),
            state=QuotaState(redis=redis, key_prefix=settings.key_prefix),
            queue=queue,
            is_admin=bot_settings.is_admin,
        )
        self.delivery = Delivery(adapter=adapter, state=self.state, queue=queue, store=store)
        self.outage = Outage(name=f"bot ({adapter.platform})", logger=log)
        # Approved images POSTed to a CMS when PROOFROOM_WEBHOOK_URL is set (bot.webhooks).
        target = WebhookTarget.from_settings(bot_settings)
        self.webhook = (
            WebhookDeliverer(
                target=target,
                outbox=WebhookState(redis=redis, key_prefix=settings.key_prefix, ttl_s=ttl_s),
                store=store,
                adapter=adapter,
                outage=self.outage,
            )
            if target is not None
            else None
        )
        # 🔀 / ⬆️ and /imagine vary|upscale: variations and upscales of posted images.
        self.followups = FollowupDesk(
            adapter=adapter,
            state=self.state,
            resolver=self.resolver,
            quotas=self.quotas,
            submit=self.submit,
            may_review=lambda user, roles: self.review.may_review(user, roles),
            position=queue.position,
        )
        self.review = ReviewDesk(
            adapter=adapter,
            state=self.state,
            store=store,
            policy=bot_settings,
            export_dir=bot_settings.export_path(settings),
            limits=settings.limits,
            resubmit=self._resubmit,
            approvals=self.webhook,
            usage=UsageState(redis=redis, settings=settings),
            followup=self.followups.react,
        )
        # /imagine usage; the calendar digest reads the same ledger (bot.usage).
        self.usage = UsageDesk(
            adapter=adapter,
            usage=UsageState(redis=redis, settings=settings),
            rates=Rates.from_settings(settings),
            zone=ZoneInfo(bot_settings.timezone),
        )
        # One group per platform: a Slack bot and a Discord bot sharing a Redis both see
        # every event and each keeps the ones for its own platform.
        self.group = f"{bot_settings.event_group}-{adapter.platform}"
        self.consumer = bot_settings.event_consumer
        # Workflows built on single jobs own their commands and their threads' progress;
        # each gets what it uses and queues through ``submit``, never the service itself.
        batches = BatchState(redis=redis, key_prefix=settings.key_prefix, ttl_s=ttl_s)
        self.batches = BatchDesk(
            adapter=adapter,
            state=self.state,
            batches=batches,
            report=BatchReport(
                adapter=adapter,
                state=self.state,
                batches=batches,
                store=store,
                upload_max_bytes=bot_settings.upload_max_bytes,
            ),
            resolver=self.resolver,
            max_rows=bot_settings.batch_max_rows,
            submit=self.submit,
            cancel=queue.cancel,
            quotas=self.quotas,
        )
        self.calendar_state = CalendarState(
            redis=redis, key_prefix=settings.key_prefix, ttl_s=ttl_s
        )
        self.calendars = self.calendar_desk()
        self.delivery.observers.append(self.batches.on_event)
        self.followed = FollowedJobs(state=self.state, queue=queue, platform=adapter.platform)
        self.pump_loop = EventPump(
            events=events,
            delivery=self.delivery,
            followed=self.followed,
            outage=self.outage,
            group=self.group,
            consumer=self.consumer,
            # Read at each pump, so a desk swapped in (tests, a reload) is the one ticked.
            before_read=lambda: self.calendars.tick(),
        )

    def calendar_desk(
        self, *, calendars: dict[str, Calendar] | None = None, clock: Clock = utc_now
    ) -> CalendarDesk:
        """A calendar desk on this service's collaborators: the calendars of the configured
        folder, or ``calendars``; ``clock`` for tests that freeze time."""
        if calendars is None:
            folder = self.bot_settings.calendars_path(self.settings)
            channels = self.bot_settings.calendar_channels
            calendars = load_calendars(folder, channels=channels) if folder.is_dir() else {}
        return CalendarDesk(
            adapter=self.adapter,
            state=self.state,
            weeks=self.calendar_state,
            resolver=self.resolver,
            submit=self.submit,
            calendars=calendars,
            clock=clock,
            quotas=self.quotas,
            usage=UsageFigures(usage=self.usage.usage, rates=self.usage.rates),
        )

    @classmethod
    def build(
        cls,
        *,
        adapter: ChatAdapter,
        settings: Settings,
        bot_settings: BotSettings,
        redis: redis_lib.Redis,
        catalog: Catalog | None = None,
    ) -> BotService:
        """The service for ``adapter`` on the real queue, event stream and store of
        ``settings``: what every adapter's runner (and the test harnesses) start with."""
        catalog = catalog or load_catalog(settings)
        queue = JobQueue(redis=redis, settings=settings, catalog=catalog)
        return cls(
            adapter=adapter,
            queue=queue,
            events=queue.events,
            catalog=catalog,
            store=store_from_settings(settings),
            settings=settings,
            bot_settings=bot_settings,
            redis=redis,
        )

    # -- commands -------------------------------------------------------------------------

    def handle_command(self, event: CommandEvent) -> str:
        """Answer ``/imagine <text>`` at once: an error, a meta answer, or "queued" (the job
        card opens a thread in the channel). Only Redis and one post; no rendering here.
        Never raises: a failure on our side is a sentence with a reference into the log."""
        try:
            return self._command(event)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception(
                "command %r from %s failed (reference %s)", event.text, event.user, reference
            )
            return texts.try_again(reference)

    def _command(self, event: CommandEvent) -> str:
        # First, for every command: the channel allow list and the rate limit (bot.quotas).
        refused = self.quotas.admit(event)
        if refused is not None:
            return refused
        self.reloads.refresh()  # another process ran /imagine reload: rescan first
        # Workflows with words of their own; anything else is an image (or a meta command).
        word = first_word(event.text)
        if word in ("batch", "calendar"):
            desk = self.batches if word == "batch" else self.calendars
            reply = desk.command(event)
            if reply is not None:
                return _sentence(reply)
        if word in ("vary", "upscale"):
            reply = self.followups.command(event)
            if reply is not None:
                return _sentence(reply)
        parsed = parse(
            event.text,
            catalog=self.catalog,
            max_prompt_chars=self.settings.limits.max_prompt_chars,
        )
        if isinstance(parsed, BadCommand):
            return _refusal(parsed.message)
        if isinstance(parsed, MetaCommand) and parsed.name == "repost":
            return self._repost(parsed.argument or "", event=event)
        if isinstance(parsed, MetaCommand) and parsed.name == "reload":
            return self._reload(event)
        if isinstance(parsed, MetaCommand) and parsed.name == "usage":
            return self.usage.command(parsed.argument, event=event)
        if isinstance(parsed, MetaCommand):
            return meta.answer(
                parsed,
                event=event,
                catalog=self.catalog,
                queue=self.queue,
                state=self.state,
                may_cancel_any=self.bot_settings.is_admin(event.user, event.roles),
                routing=self.resolver.routing,
            )
        # The user's quotas are the resolver's last check, before attached images are
        # stored: a refused command leaves nothing behind (bot.quotas).
        reserved: list[Reservation] = []

        def admit(spec: JobSpec) -> None:
            reserved.append(self.quotas.reserve([spec], requester=event.user, roles=event.roles))

        try:
            resolved = self.resolver.resolve(
                parsed,
                requested_by=requester_key(event.platform, event.user),
                attachments=event.attachments,
                admit=admit,
            )
        except Exception as exc:
            for taken in reserved:  # storing the attached images failed: nothing queued
                self.quotas.release(taken)
            if isinstance(exc, UserError):
                return _refusal(exc.message)
            raise
        reservation = reserved[0]
        spec, inputs = resolved.spec, resolved.inputs
        try:
            thread = self.adapter.post(
                channel=event.channel,
                text=texts.job_card(spec, requester=event.user, catalog=self.catalog),
                blocks=[cancel_button(spec.id)],
            )
        except UserError as exc:  # e.g. the bot is not a member of this channel
            self.quotas.release(reservation)
            return _sentence(exc.message)
        except Exception:
            log.exception("job %s: could not open its thread", spec.id)
            self.quotas.release(reservation)
            return _sentence(TRY_AGAIN)
        if inputs is not None:  # they open the thread, under the card: best effort
            self._try(lambda: post_inputs(self.adapter, spec, thread=thread, prepared=inputs))
        try:
            job_id = self.submit(spec, thread=thread, requester=event.user)
        except Exception:
            log.exception("job %s: could not be queued", spec.id)
            self.quotas.release(reservation)
            self._try(lambda: self.adapter.edit(message=thread, text=texts.not_queued(spec.id)))
            return _sentence(TRY_AGAIN)
        position = self.queue.position(job_id)
        return texts.queued(job_id, spec, position=position, waiting=resolved.waiting)

    def _reload(self, event: CommandEvent) -> str:
        """``/imagine reload``: rescan the drop-in folders here and, through Redis, in every
        bot and worker before their next command or job (``engine.reloads``)."""
        if not self.bot_settings.is_admin(event.user, event.roles):
            return (
                "Only admins can reload the catalog (PROOFROOM_ADMIN_IDS or "
                "PROOFROOM_ADMIN_ROLES; without them, the approvers)."
            )
        catalog = self.reloads.request()
        cannot = f"; {len(catalog.problems)} file(s) cannot be used" if catalog.problems else ""
        return (
            f"Reloaded: {len(catalog.models)} models, {len(catalog.loras)} LoRAs, "
            f"{len(catalog.embeddings)} embeddings, {len(catalog.vaes)} VAEs{cannot} "
            "(`/imagine models`, `/imagine loras` and `/imagine embeddings` list them). "
            "Workers pick the change up before their next job."
        )

    def _repost(self, job_id: str, *, event: CommandEvent) -> str:
        record = self.state.job(job_id)
        if record is None or record.thread.channel != event.channel:
            return (
                f"There is no job `{texts.escape(job_id)}` of this channel with images "
                "waiting to be posted."
            )
        try:
            posted = self.delivery.repost(job_id)
        except UserError as exc:
            return _sentence(exc.message)
        if not posted:
            return f"Every image of job `{job_id}` is already in its thread."
        return f"Posted the images of job `{job_id}` in its thread."

    def submit(
        self,
        spec: JobSpec,
        *,
        thread: MessageRef,
        requester: str,
        rerender_of: str | None = None,
        root: str | None = None,
        followup: FollowupKind | None = None,
        followup_of: str | None = None,
    ) -> str:
        """Queue ``spec`` with its results routed to ``thread``; return the job id. The job
        is recorded before it is queued so its first event always finds its thread."""
        origin = {
            # What a workflow put there (batch, row label) travels along; the lineage of
            # the job the spec was copied from (a re-render of a variation) does not.
            **{k: v for k, v in spec.origin.items() if k not in ("followup", "followup_of")},
            "platform": thread.platform,
            "channel": thread.channel,
            "thread": thread.thread_id,
            "requester": requester,
        }
        if rerender_of:
            origin.update(rerender_of=rerender_of, root=root or rerender_of)
        if followup and followup_of:
            origin.update(followup=followup, followup_of=followup_of)
        spec = spec.model_copy(update={"origin": origin})
        record = JobRecord(
            spec=spec,
            thread=thread,
            requester=requester,
            rerender_of=rerender_of,
            root=root,
            followup=followup if followup_of else None,
            followup_of=followup_of,
        )
        self.state.add_job(record)
        try:
            return self.queue.enqueue(spec)
        except Exception:
            self.state.close_job(record)
            raise

    def _resubmit(self, spec: JobSpec, *, image: ImageRecord, requester: str, auto: bool) -> str:
        thread = thread_of(image)
        self.adapter.post(
            channel=thread.channel,
            thread=thread.id,
            text=texts.rerender_card(spec, image=image, requester=requester, auto=auto),
        )
        return self.submit(
            spec.model_copy(update={"requested_by": requester_key(thread.platform, requester)}),
            thread=thread,
            requester=image.requester,
            rerender_of=image.message.key,
            root=image.root,
        )

    @staticmethod
    def _try(action: Callable[[], object]) -> None:
        """Best effort: used to tidy up after a failure that is already being reported."""
        try:
            action()
        except Exception:
            log.warning("could not tidy up after a failure", exc_info=True)

    # -- reactions ------------------------------------------------------------------------

    def handle_reaction(self, event: ReactionEvent) -> None:
        """Count a reaction on an image message (see ``bot.review.desk``); reactions in a
        channel off the allow list are ignored (``bot.quotas``)."""
        if not self.quotas.allows(channel=event.message.channel, guild=event.guild):
            return
        try:
            self.review.handle_reaction(event)
        except Exception:
            log.exception(
                "reaction %s by %s on %s failed", event.vote, event.user, event.message.key
            )

    # -- job events -----------------------------------------------------------------------

    def pump_until(self, stop: threading.Event, *, block_ms: int = 1000) -> None:
        """Every runner's event loop until ``stop`` is set (``bot.jobs.pump``), with the
        webhook deliveries in a thread beside it when a webhook is set (``bot.webhooks``)."""
        with self.webhook.running(stop) if self.webhook is not None else nullcontext():
            self.pump_loop.run_until(stop, block_ms=block_ms)

    def pump(self, *, block_ms: int = 1000, count: int = 100) -> int:
        """One read of job events into their threads; how many were read (``bot.jobs.pump``)."""
        return self.pump_loop.pump(block_ms=block_ms, count=count)


def cancel_button(job_id: str) -> dict[str, str]:
    """A neutral button block; adapters that show buttons turn it into their own kind."""
    return {
        "type": "button",
        "action": "cancel",
        "value": job_id,
        "label": "Cancel",
        "style": "danger",
    }


def _refusal(message: str) -> str:
    """A user error as a reply: it may quote what was typed (an unknown model `<!here>`),
    so it is escaped as user text; the bot's own markup never appears in these."""
    return _sentence(texts.escape(message))


def _sentence(message: str) -> str:
    """Error messages are built lower-case to be embedded; a reply starts with a capital."""
    return texts.sentence(message)


__all__ = ["BotService", "ImageRecord"]
