"""Jobs of API keys: queued through the chat's own resolver, quotas and queue, followed
through the job event stream, seen only by the key that queued them.

- :meth:`ApiJobs.submit`: the chat's rate limit and quotas (``bot.quotas``) for the key's
  user, the resolver (``bot.jobs.resolve``: templates, models, LoRAs, limits, attached
  images checked and stored), then the queue. Refusals are ``UserError`` sentences, the
  same the chat shows; a quota's is :class:`~bot.quotas.desk.QuotaExceeded`.
- :meth:`ApiJobs.status` / :meth:`ApiJobs.wait`: state, progress and images. The job event
  stream is read through a consumer group of its own (``{event_group}-api``), on demand:
  whichever request asks first folds the new events into the jobs' records, so any number
  of ``serve`` replicas agree, and no thread is needed.
- :meth:`ApiJobs.cancel`, :meth:`ApiJobs.image_bytes`.

Origin. A key's jobs carry ``{"platform": "api", "api_key": id, "requester": user}``; the
chat bots skip them. A key with a review channel gives ``{"platform": <its platform>,
"channel": <its channel>, ...}`` instead, so that platform's bot opens a thread there for
them like for a batch (``bot.jobs.delivery``); ``serve`` posts nothing itself.

Each job is recorded (its key, spec, state, progress, result) by ``bot.api.state``, kept
``state_ttl_days``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import cast
from zoneinfo import ZoneInfo

import redis as redis_lib

from bot.api.keys import ApiKey, ApiKeys
from bot.api.state import ApiState
from bot.api.status import ApiJobState, ApiJobStatus, event_fields, job_status, stored_state
from bot.grammar.parse import ImagineRequest
from bot.jobs.attachments import check_image
from bot.jobs.resolve import JobResolver
from bot.jobs.routing import routing_for
from bot.ports import Attachment, AttachmentRole, CommandEvent
from bot.quotas.desk import QuotaDesk, QuotaExceeded, Reservation
from bot.quotas.state import QuotaState
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.events import TERMINAL_KINDS, JobEvent
from engine.model_folders import load_catalog
from engine.queue import JobQueue
from engine.reloads import CatalogReloads
from engine.settings import Settings
from engine.spec import JobResult, JobSpec
from engine.store import ArtifactStore

log = logging.getLogger(__name__)

ROLES: tuple[AttachmentRole, ...] = ("image", "mask", "control")
# The request field of each role (the native API's; A1111's ``init_images``/``mask`` read alike).
IMAGE_NAMES = {"image": "init_image", "mask": "mask_image", "control": "control_image"}


class JobNotFound(LookupError):
    """No job of this id for this key (unknown, expired, or another key's): a 404."""


class ApiJobs:
    """The API's side of the queue for one process (see the module docstring)."""

    def __init__(
        self,
        *,
        redis: redis_lib.Redis,
        settings: Settings,
        bot_settings: BotSettings,
        store: ArtifactStore,
        catalog: Catalog | None = None,
        queue: JobQueue | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.bot_settings = bot_settings
        self.store = store
        self.catalog = catalog or load_catalog(settings)
        self.queue = queue or JobQueue(redis=redis, settings=settings, catalog=self.catalog)
        self.events = self.queue.events
        self.reloads = CatalogReloads(
            redis=redis,
            settings=settings,
            catalog=self.catalog,
            load=lambda: load_catalog(settings),
        )
        self.resolver = JobResolver(
            catalog=self.catalog,
            settings=settings,
            bot_settings=bot_settings,
            store=store,
            routing=routing_for(redis=redis, settings=settings, catalog=self.catalog),
        )
        # The chat's rate limit and quotas; no channel allow list: a key is not in a channel.
        self.quotas = QuotaDesk(
            quotas=bot_settings.quotas,
            allowed_channels=frozenset(),
            zone=ZoneInfo(bot_settings.timezone),
            state=QuotaState(redis=redis, key_prefix=settings.key_prefix),
            queue=self.queue,
            is_admin=bot_settings.is_admin,
        )
        self.keys = ApiKeys(redis=redis, key_prefix=settings.key_prefix)
        self.ttl_s = bot_settings.state_retention_s
        self.state = ApiState(redis=redis, key_prefix=settings.key_prefix, ttl_s=self.ttl_s)
        self.group = f"{bot_settings.event_group}-api"
        self.consumer = bot_settings.event_consumer
        self._reading = threading.Lock()
        self._group_ready = False

    # -- queueing ---------------------------------------------------------------------------

    def submit(
        self, request: ImagineRequest, *, key: ApiKey, images: Mapping[str, bytes] = {}
    ) -> JobSpec:
        """Queue ``request`` for ``key``; the spec as queued. ``images``: the starting image,
        mask and control image by role (``image``, ``mask``, ``control``), checked like chat
        attachments before anything is stored. ``UserError`` (a sentence) when refused;
        :class:`QuotaExceeded` for the rate limit and quotas."""
        attachments = self.attachments(images)
        refused = self.quotas.admit(
            CommandEvent(platform=key.platform, user=key.user, channel="api", text="")
        )
        if refused is not None:
            raise QuotaExceeded(refused, limit="commands_per_minute", used=0, allowed=0)
        self.reloads.refresh()  # another process ran /imagine reload: rescan first
        reserved: list[Reservation] = []

        def admit(spec: JobSpec) -> None:
            reserved.append(self.quotas.reserve([spec], requester=key.user))

        try:
            resolved = self.resolver.resolve(
                request, requested_by=key.requested_by, attachments=attachments, admit=admit
            )
            return self.enqueue(resolved.spec, key=key)
        except BaseException:
            for taken in reserved:  # nothing was queued: the images are not used
                self.quotas.release(taken)
            raise

    def attachments(self, images: Mapping[str, bytes]) -> list[Attachment]:
        """``images`` by role as the chat's attachments, each checked (size, then the header
        only: a decompression bomb is refused before decoding, ``bot.jobs.attachments``)."""
        found = []
        for role, data in images.items():
            if role not in ROLES:
                raise ValueError(f"unknown image role {role!r}")
            name = IMAGE_NAMES[role]  # how the user's request called it, for the sentences
            checked = check_image(
                data,
                filename=name,
                max_bytes=self.bot_settings.upload_max_bytes,
                max_pixels=self.settings.limits.max_input_pixels,
            )
            found.append(
                Attachment(
                    name,
                    checked.content_type,
                    len(data),
                    data,
                    role=cast(AttachmentRole, role),
                )
            )
        return found

    def enqueue(self, spec: JobSpec, *, key: ApiKey) -> JobSpec:
        """Queue a resolved ``spec`` as ``key``'s job (no quota checks: :meth:`submit` made
        them); the spec with its origin."""
        origin = {"api_key": key.id, "requester": key.user}
        if key.review_channel and key.review_platform:
            origin |= {"platform": key.review_platform, "channel": key.review_channel}
        else:
            origin["platform"] = "api"
        spec = spec.model_copy(update={"origin": {**spec.origin, **origin}})
        self._ensure_group()  # before the first event of the job can be published
        self.state.add_job(
            spec.id,
            fields={"key": key.id, "spec": spec.model_dump_json(), "state": "queued"},
            artifacts=spec.input_images().values(),  # a key may fetch what it sent, too
        )
        try:
            self.queue.enqueue(spec)
        except BaseException:
            self.state.delete_job(spec.id)
            raise
        self.keys.set_latest_job(key, spec.id)
        log.info("API key %s (%s) queued job %s", key.name, key.id, spec.id)
        return spec

    # -- following ---------------------------------------------------------------------------

    def spec(self, job_id: str, *, key: ApiKey) -> JobSpec:
        """The spec ``key`` queued as ``job_id``; :class:`JobNotFound` otherwise."""
        return JobSpec.model_validate_json(self._own(job_id, key)["spec"])

    def status(self, job_id: str, *, key: ApiKey) -> ApiJobStatus:
        """Where ``key``'s job ``job_id`` is; :class:`JobNotFound` for any other id."""
        fields = self._own(job_id, key)
        if fields.get("state") not in TERMINAL_KINDS:
            self.catch_up()
            fields = self._own(job_id, key)
            if fields.get("state") not in TERMINAL_KINDS and self.events.terminal_kind(job_id):
                # It ended just after that read. Its guard and its event are written in one
                # transaction, so the event (with the images) is in the stream now: read
                # once more rather than answer "done" without the images.
                self.catch_up()
                fields = self._own(job_id, key)
        return self._status(job_id, fields)

    def wait(self, job_id: str, *, key: ApiKey, timeout_s: float) -> ApiJobStatus:
        """:meth:`status` once the job has ended, or when ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        pause = 0.05
        while True:
            status = self.status(job_id, key=key)
            left = deadline - time.monotonic()
            if status.terminal or left <= 0:
                return status
            time.sleep(min(pause, left))
            pause = min(pause * 1.5, 0.5)

    def cancel(self, job_id: str, *, key: ApiKey) -> bool:
        """Cancel ``key``'s job (queued: at once; running: at its next step); False when it
        has already ended. :class:`JobNotFound` for another key's job."""
        self._own(job_id, key)
        return self.queue.cancel(job_id)

    def image_bytes(self, artifact_id: str, *, key: ApiKey) -> bytes:
        """A result (or an input) of one of ``key``'s jobs; :class:`JobNotFound` otherwise."""
        self.job_of_artifact(artifact_id, key=key)
        try:
            return self.store.get(artifact_id)
        except LookupError:
            raise JobNotFound(f"no image {artifact_id}") from None

    def job_of_artifact(self, artifact_id: str, *, key: ApiKey) -> str:
        """The id of ``key``'s job that ``artifact_id`` belongs to; :class:`JobNotFound`."""
        job_id = self.state.artifact_job(artifact_id)
        if job_id is None:
            self.catch_up()  # a result whose done event nobody has read yet
            job_id = self.state.artifact_job(artifact_id)
        if job_id is None:
            raise JobNotFound(f"no image {artifact_id}")
        self._own(job_id, key)
        return job_id

    def result(self, job_id: str, *, key: ApiKey) -> JobResult | None:
        """The result of ``key``'s finished job ``job_id`` (None until it is done)."""
        raw = self._own(job_id, key).get("result")
        return JobResult.model_validate_json(raw) if raw else None

    def catch_up(self, *, count: int = 500) -> int:
        """Fold the job events not yet read by this API's consumer group into the records of
        the API's jobs; how many events were read. One caller at a time per process."""
        self._ensure_group()
        total = 0
        with self._reading:
            while True:
                entries = self.events.read(
                    group=self.group, consumer=self.consumer, count=count, block_ms=1
                )
                try:
                    for entry_id, event in entries:
                        self._apply(event)
                        self.events.ack(group=self.group, entry_id=entry_id)
                except Exception:
                    # The entries not acknowledged are read again, first, by the next call.
                    self.events.replay(group=self.group, consumer=self.consumer)
                    raise
                total += len(entries)
                if len(entries) < count:
                    return total

    # -- internals ---------------------------------------------------------------------------

    def _apply(self, event: JobEvent) -> None:
        if not event.origin.get("api_key"):
            return  # not an API job
        state = self.state.job_state(event.job_id)
        if state is None or state in TERMINAL_KINDS:
            return  # expired, or a late event after the end
        fields = event_fields(event)
        images = event.result.images if event.result is not None else []
        self.state.update_job(
            event.job_id, fields=fields, artifacts=[image.artifact_id for image in images]
        )

    def _status(self, job_id: str, fields: dict[str, str]) -> ApiJobStatus:
        state = stored_state(fields)
        if state not in TERMINAL_KINDS:
            ended = self.events.terminal_kind(job_id)  # the guard outlives trimmed events
            if ended is not None:
                state = cast(ApiJobState, ended)
        position = self.queue.position(job_id) if state == "queued" else None
        return job_status(job_id, fields, state=state, position=position)

    def _own(self, job_id: str, key: ApiKey) -> dict[str, str]:
        fields = self.state.job(job_id)
        if fields.get("key") != key.id or "spec" not in fields:
            raise JobNotFound(f"no job {job_id}")
        return fields

    def _ensure_group(self) -> None:
        if not self._group_ready:
            # From now on, not from the stream's start: the API's jobs are all queued after.
            self.events.ensure_group(self.group, start="$")
            self._group_ready = True


__all__ = ["ApiJobs", "JobNotFound"]
