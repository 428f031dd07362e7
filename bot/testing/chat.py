"""A chat platform for tests, shipped with the bot (errbot-style): :class:`FakeAdapter`
records every post, edit, upload and notice, and :class:`FakeChat` wires it to the real
queue, event stream, store and (optionally) a real embedded worker so tests read like a
conversation::

    reply = chat.command("/imagine product-photo product=mug --n 4")
    chat.run_until_idle()
    images = chat.images(reply.thread)
    chat.react(images[0], "approve", user="U2")
    assert "approved" in chat.thread(reply.thread)[-1].text

Importing this module does not import torch; starting the worker does.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib

from bot.ports import (
    VOTES,
    Attachment,
    CommandEvent,
    MessageRef,
    ReactionEvent,
    Vote,
    vote_for_emoji,
)
from bot.service import BotService
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.model_folders import load_catalog
from engine.settings import Settings
from engine.store import ArtifactStore


@dataclass
class FakeMessage:
    """A message as the fake platform shows it now; ``history`` holds its earlier texts."""

    ref: MessageRef
    text: str
    data: bytes | None = None
    filename: str | None = None
    votable: bool = False
    history: list[str] = field(default_factory=list)

    @property
    def is_image(self) -> bool:
        """Whether this message carries an uploaded file."""
        return self.data is not None


@dataclass(frozen=True)
class Notice:
    """Something said to one user only."""

    channel: str
    user: str
    text: str
    thread: str | None


@dataclass(frozen=True)
class PrivateFile:
    """A file given to one user alone."""

    channel: str
    user: str
    text: str
    filename: str
    data: bytes


class FakeAdapter:
    """In-memory ``ChatAdapter``: messages get ids ``m1``, ``m2``...; thread-safe."""

    def __init__(self, platform: str = "fake") -> None:
        self.platform = platform
        self.messages: dict[str, FakeMessage] = {}
        self.notices: list[Notice] = []
        self.private: list[PrivateFile] = []  # files given to one user (a direct message)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # Set to make the next calls raise (a platform outage, a crash mid-delivery).
        self.fail: Callable[[str], Exception | None] | None = None

    def post(
        self,
        *,
        channel: str,
        text: str,
        thread: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> MessageRef:
        """Record a message."""
        self._call("post", channel=channel, text=text, thread=thread, blocks=blocks)
        return self._add(channel=channel, thread=thread, text=text)

    def edit(
        self, *, message: MessageRef, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """Replace a message's text, keeping the old one in its history."""
        self._call("edit", message=message, text=text)
        with self._lock:
            current = self.messages[message.id]
            current.history.append(current.text)
            current.text = text

    def upload(
        self,
        *,
        channel: str,
        thread: str | None,
        data: bytes,
        filename: str,
        text: str,
        votable: bool = False,
    ) -> MessageRef:
        """Record a file message."""
        self._call(
            "upload", channel=channel, thread=thread, filename=filename, text=text, votable=votable
        )
        return self._add(
            channel=channel, thread=thread, text=text, data=data, filename=filename, votable=votable
        )

    def notify(self, *, channel: str, user: str, text: str, thread: str | None = None) -> None:
        """Record an ephemeral notice."""
        self._call("notify", channel=channel, user=user, text=text, thread=thread)
        with self._lock:
            self.notices.append(Notice(channel, user, text, thread))

    def upload_private(
        self, *, channel: str, user: str, data: bytes, filename: str, text: str
    ) -> None:
        """Record a file given to one user (``private``)."""
        self._call("upload_private", channel=channel, user=user, filename=filename, text=text)
        with self._lock:
            self.private.append(PrivateFile(channel, user, text, filename, data))

    def thread(self, ref: MessageRef | str) -> list[FakeMessage]:
        """The thread's first message and its replies, in order."""
        root = ref if isinstance(ref, str) else ref.thread_id
        with self._lock:
            return [m for m in self.messages.values() if root in (m.ref.id, m.ref.thread)]

    def _call(self, kind: str, **kwargs: Any) -> None:
        with self._lock:
            self.calls.append((kind, kwargs))
        if self.fail is not None and (error := self.fail(kind)) is not None:
            raise error

    def _add(self, *, channel: str, thread: str | None, text: str, **extra: Any) -> MessageRef:
        with self._lock:
            ref = MessageRef(self.platform, channel, f"m{next(self._ids)}", thread)
            self.messages[ref.id] = FakeMessage(ref=ref, text=text, **extra)
            return ref


@dataclass(frozen=True)
class Reply:
    """What ``/imagine`` answered, and the thread it opened (None when it opened none)."""

    text: str
    thread: MessageRef | None


class FakeChat:
    """A conversation against the real bot service; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        redis: redis_lib.Redis,
        bot_settings: BotSettings | None = None,
        catalog: Catalog | None = None,
        worker: bool = True,
        channel: str = "C1",
        user: str = "U1",
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.bot_settings = bot_settings or BotSettings(_env_file=None)  # type: ignore[call-arg]
        self.catalog = catalog or load_catalog(settings)
        self.adapter = FakeAdapter()
        self.channel, self.user = channel, user
        self.service = self._service()
        self.worker = None
        if worker:
            from engine.embedded import start_embedded_worker

            self.worker = start_embedded_worker(settings=settings, redis=redis)
        self._events = itertools.count(1)

    @property
    def store(self) -> ArtifactStore:
        """The service's artifact store (a new one after :meth:`restart`)."""
        return self.service.store

    # -- talking ----------------------------------------------------------------------------

    def command(
        self,
        text: str,
        *,
        user: str | None = None,
        channel: str | None = None,
        roles: frozenset[str] | set[str] = frozenset(),
        attachments: tuple[Attachment, ...] = (),
    ) -> Reply:
        """Run ``/imagine ...`` as ``user``; the reply and the thread it opened."""
        before = set(self.adapter.messages)
        channel = channel or self.channel
        text = self.service.handle_command(
            CommandEvent(
                platform=self.adapter.platform,
                user=user or self.user,
                channel=channel,
                text=text,
                roles=frozenset(roles),
                attachments=attachments,
            )
        )
        opened = [
            m.ref
            for m in self.adapter.messages.values()
            if m.ref.id not in before and m.ref.thread is None
        ]
        return Reply(text=text, thread=opened[0] if opened else None)

    def react(
        self,
        message: FakeMessage | MessageRef,
        vote: Vote | str,
        *,
        user: str,
        added: bool = True,
        roles: frozenset[str] | set[str] = frozenset(),
        event_id: str | None = None,
    ) -> None:
        """``user`` adds (or with ``added=False`` removes) a reaction: a vote name
        (approve/reject/rerender/vary/upscale) or an emoji as a platform names it."""
        ref = message.ref if isinstance(message, FakeMessage) else message
        normal = vote if vote in VOTES else vote_for_emoji(vote)
        self.service.handle_reaction(
            ReactionEvent(
                platform=self.adapter.platform,
                user=user,
                message=ref,
                vote=normal,
                added=added,
                roles=frozenset(roles),
                event_id=event_id or f"ev{next(self._events)}",
            )
        )

    def unreact(self, message: FakeMessage | MessageRef, vote: Vote | str, *, user: str) -> None:
        """``user`` removes a reaction."""
        self.react(message, vote, user=user, added=False)

    # -- time passing -----------------------------------------------------------------------

    def pump(self, *, block_ms: int = 100) -> int:
        """Deliver job events once."""
        return self.service.pump(block_ms=block_ms)

    def wait_for(self, predicate: Callable[[], Any], *, timeout: float = 60.0) -> Any:
        """Deliver job events until ``predicate()`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"still waiting after {timeout:.0f} s; thread so far:\n{self.dump()}"
                )
            self.pump()

    def run_until_idle(self, *, timeout: float = 60.0) -> None:
        """Deliver job events until every job the bot queued has ended and been shown."""
        self.wait_for(
            lambda: not self.service.state.open_jobs(self.adapter.platform), timeout=timeout
        )
        while self.pump(block_ms=10):
            pass

    def restart(self) -> BotService:
        """A new ``BotService`` on the same platform and Redis, as after a bot restart."""
        self.service = self._service()
        return self.service

    def set_policy(self, **changes: Any) -> None:
        """Change bot settings (review policy...) and restart the service with them."""
        self.bot_settings = self.bot_settings.model_copy(update=changes)
        self.restart()

    # -- looking ----------------------------------------------------------------------------

    def thread(self, ref: MessageRef) -> list[FakeMessage]:
        """The thread's messages in order, as they read now."""
        return self.adapter.thread(ref)

    def images(self, ref: MessageRef) -> list[FakeMessage]:
        """The image messages of a thread, in order."""
        return [m for m in self.thread(ref) if m.is_image]

    def notices_for(self, user: str) -> list[Notice]:
        """What was said to ``user`` alone."""
        return [n for n in self.adapter.notices if n.user == user]

    def dump(self) -> str:
        """Every message, for failure output."""
        return "\n".join(
            f"{m.ref.id} [{m.ref.thread or '-'}] {m.text}" for m in self.adapter.messages.values()
        )

    def close(self) -> None:
        """Stop the worker."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _service(self) -> BotService:
        return BotService.build(
            adapter=self.adapter,
            settings=self.settings,
            bot_settings=self.bot_settings,
            redis=self.redis,
            catalog=self.catalog,
        )
