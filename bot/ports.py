"""The port between the rules (``bot.service``) and a chat platform, and the neutral values
that cross it.

An adapter (Slack, Discord, the shell, the test fake) translates its platform's payloads
into these values and back; ids, emoji names and payload shapes stop at the adapter. Text
crossing the port uses the markup both Slack and Discord understand: backticks for code and
``<@user>`` for a mention; an adapter rewrites anything its platform shows differently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.spec import JobSpec

# "rerender", "vary" and "upscale" are not votes on approval: each asks for a new job from
# the image (bot.review re-renders; bot.followups makes variations and upscales).
Vote = Literal["approve", "reject", "rerender", "vary", "upscale"]
VOTES: tuple[Vote, ...] = ("approve", "reject", "rerender", "vary", "upscale")
FollowupKind = Literal["vary", "upscale"]
FOLLOWUPS: tuple[FollowupKind, ...] = ("vary", "upscale")


class ChannelUnavailable(UserError):
    """The platform refuses to post in a channel for a reason only a person can fix (the
    bot is not a member, the channel is archived). Adapters raise it (or a subclass) from
    ``post``/``upload``; ``message`` says what to do."""

    kind = "channel_unavailable"

    def __init__(self, message: str, *, channel: str, error: str = "") -> None:
        super().__init__(message)
        self.channel = channel
        self.error = error


@dataclass(frozen=True)
class MessageRef:
    """Where a message lives: ``thread`` is the id of the thread's first message, or None
    for a message at the top of a channel (which may itself start a thread)."""

    platform: str
    channel: str
    id: str
    thread: str | None = None

    @property
    def key(self) -> str:
        """A string naming this message uniquely across platforms (used in Redis keys)."""
        return f"{self.platform}:{self.channel}:{self.id}"

    @property
    def thread_id(self) -> str:
        """The thread this message belongs to, or starts."""
        return self.thread or self.id

    def to_dict(self) -> dict[str, str]:
        """A JSON-friendly form, for Redis."""
        data = {"platform": self.platform, "channel": self.channel, "id": self.id}
        if self.thread:
            data["thread"] = self.thread
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MessageRef:
        """The inverse of :meth:`to_dict`."""
        return cls(
            platform=str(data["platform"]),
            channel=str(data["channel"]),
            id=str(data["id"]),
            thread=str(data["thread"]) if data.get("thread") else None,
        )


AttachmentRole = Literal["image", "mask", "control"]


@dataclass(frozen=True)
class Attachment:
    """A file that came with a command. ``data`` when the adapter already has the bytes,
    otherwise ``fetch`` downloads them on demand (a slash command may never need them).

    ``role`` is the part the platform says the file plays: ``image`` (the starting image),
    ``mask`` or ``control``, when the user picked it in a typed option (Discord); None when
    the platform cannot say (Slack files on a mention), and the rules decide from the
    order and the flags (``bot.jobs.inputs``)."""

    filename: str
    content_type: str
    size: int
    data: bytes | None = None
    fetch: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)
    role: AttachmentRole | None = None

    def read(self) -> bytes:
        """The file's bytes, fetched on first use."""
        if self.data is not None:
            return self.data
        if self.fetch is None:
            raise ValueError(f"attachment {self.filename} has neither data nor fetch")
        data = self.fetch()
        # Kept, so the checks, the store and the batch desk never download a file twice.
        object.__setattr__(self, "data", data)
        return data


@dataclass(frozen=True)
class CommandEvent:
    """A user ran ``/imagine <text>`` in ``channel``. ``roles`` are the user's role names
    (Discord roles, Slack user groups) as the adapter knows them; ``guild``: the server of
    the channel where a platform has one (Discord), for the channel allow list."""

    platform: str
    user: str
    channel: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    roles: frozenset[str] = frozenset()
    guild: str | None = None


@dataclass(frozen=True)
class ReactionEvent:
    """A reaction was added to (``added``) or removed from a message. ``vote`` is the
    normalised meaning (see :func:`vote_for_emoji`), None for reactions that mean nothing
    to the bot. ``event_id`` lets the rules drop a platform's re-delivery of the same event."""

    platform: str
    user: str
    message: MessageRef
    vote: Vote | None
    added: bool = True
    roles: frozenset[str] = frozenset()
    event_id: str | None = None
    guild: str | None = None  # the server, where the platform has one (Discord)


@runtime_checkable
class ChatAdapter(Protocol):
    """What the rules need from a chat platform. Every method is keyword-only so adapters
    and callers stay readable and can grow optional arguments."""

    platform: str

    def post(
        self,
        *,
        channel: str,
        text: str,
        thread: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> MessageRef:
        """Post ``text`` to ``channel`` (inside ``thread`` when given); return its ref."""
        ...

    def edit(
        self, *, message: MessageRef, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """Replace the text of a message this bot posted."""
        ...

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
        """Post one file with a caption as its own message. ``votable``: an image for review
        (a result), where a platform may offer the vote reactions; input previews,
        manifests and zips are not."""
        ...

    def notify(self, *, channel: str, user: str, text: str, thread: str | None = None) -> None:
        """Tell one user something only they need to see (ephemeral where possible)."""
        ...

    def upload_private(
        self, *, channel: str, user: str, data: bytes, filename: str, text: str
    ) -> None:
        """Give one file to ``user`` alone, who ran a command in ``channel``: where a
        command's answer cannot carry a file (Slack's ephemeral replies, Discord's), by
        direct message. Used for what only the asker wanted (the ``/imagine usage`` chart)."""
        ...


# Emoji as each platform names them -> vote. Slack sends names without colons
# (``white_check_mark``, ``+1``); Discord sends the unicode character. Adapters call
# vote_for_emoji(); nothing past the adapter ever sees an emoji name.
EMOJI_VOTES: dict[str, Vote] = {
    # approve
    "white_check_mark": "approve",
    "heavy_check_mark": "approve",
    "ballot_box_with_check": "approve",
    "+1": "approve",
    "thumbsup": "approve",
    "\u2705": "approve",  # ✅
    "\u2714": "approve",  # ✔
    "\u2611": "approve",  # ☑
    "\U0001f44d": "approve",  # 👍
    # reject
    "x": "reject",
    "negative_squared_cross_mark": "reject",
    "-1": "reject",
    "thumbsdown": "reject",
    "\u274c": "reject",  # ❌
    "\u274e": "reject",  # ❎
    "\U0001f44e": "reject",  # 👎
    # re-render with a new seed
    "repeat": "rerender",
    "arrows_counterclockwise": "rerender",
    "\U0001f501": "rerender",  # 🔁
    "\U0001f504": "rerender",  # 🔄
    # variations of the image (Midjourney's V)
    "twisted_rightwards_arrows": "vary",
    "\U0001f500": "vary",  # 🔀
    # upscale the image (Midjourney's U); U+2B06 comes with or without U+FE0F
    "arrow_up": "upscale",
    "arrow_up_small": "upscale",
    "\u2b06": "upscale",  # ⬆️
    "\U0001f53c": "upscale",  # 🔼
}

# What the bot tells people to use, per vote (Slack and Discord both render these).
VOTE_EMOJI: dict[Vote, str] = {
    "approve": "\u2705",
    "reject": "\u274c",
    "rerender": "\U0001f501",
    "vary": "\U0001f500",
    "upscale": "\u2b06\ufe0f",
}

_SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
_VARIATION_SELECTORS = {"\ufe0e", "\ufe0f"}


def vote_for_emoji(name: str) -> Vote | None:
    """The vote an emoji stands for, or None. Accepts Slack names (with or without colons,
    with a ``::skin-tone-N`` suffix) and unicode emoji (with skin tones or variation
    selectors)."""
    key = name.strip().strip(":")
    key = key.split("::", 1)[0]  # Slack: "+1::skin-tone-3"
    key = "".join(ch for ch in key if ch not in _SKIN_TONES and ch not in _VARIATION_SELECTORS)
    return EMOJI_VOTES.get(key) or EMOJI_VOTES.get(key.lower())


def requester_key(platform: str, user: str) -> str:
    """``JobSpec.requested_by`` for a chat user: ids are only unique within a platform."""
    return f"{platform}:{user}"


# -- the ports between the service and its workflow desks ---------------------------------


class Submit(Protocol):
    """Queue ``spec`` with its results routed to ``thread`` and return the job id
    (the service's ``submit``): how a desk queues a job without holding the service."""

    def __call__(self, spec: JobSpec, *, thread: MessageRef, requester: str) -> str: ...


# Cancel a queued or running job by id (``JobQueue.cancel``); False when it had ended.
Cancel = Callable[[str], bool]
