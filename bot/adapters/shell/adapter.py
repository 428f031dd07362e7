"""``ChatAdapter`` for the terminal: a channel printed as it grows. A translator only.

Threads are indented under their first message; images are written to files and shown
with a number (``[#2]``) that ``:react 2 approve`` refers to. On a terminal, an edit of the
last line (the progress bar) rewrites it in place; elsewhere (a script, a pipe) every edit
is printed as a new line so the transcript shows the progress.

Message ids and image numbers come from a :class:`ShellMemory`: this session's
(:class:`SessionMemory`, the default), or ``proofroom shell``'s in Redis
(``bot.adapters.shell.state``), where they go on across sessions.

Text from users reaches the terminal without control characters: an escape sequence in a
prompt could otherwise clear the screen, move the cursor or retitle the window.
"""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path
from typing import Any, Protocol, TextIO

from bot.ports import MessageRef
from bot.texts import unescape

PLATFORM = "shell"
_MENTION = re.compile(r"<@([^>]+)>")
_UP_AND_CLEAR = "\x1b[1A\r\x1b[K"
_IMAGE_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII only: "²".isdigit() is true, int("²") fails
# Terminal controls: whole ESC sequences (CSI ``ESC [ ... final``; OSC, DCS, APC, PM and SOS
# strings up to BEL, ``ESC \`` or the end of the line; ESC and one character), then any other
# C0 control but newline and tab, DEL, C1 controls, and lone surrogates (a UTF-8 terminal
# cannot be written them).
_CONTROLS = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]P_^X][^\x07\x1b\n]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]"
)


class ShellMemory(Protocol):
    """Where the shell's message ids and image numbers come from."""

    def next_id(self) -> str:
        """A message id not used before."""
        ...

    def remember(self, message: MessageRef) -> None:
        """Keep ``message`` for :meth:`message`."""
        ...

    def message(self, message_id: str) -> MessageRef | None:
        """A message remembered under that id."""
        ...

    def number_image(self, message: MessageRef) -> int:
        """Number a votable image; returns its number."""
        ...

    def image(self, number: int) -> MessageRef | None:
        """The image of that number."""
        ...


class SessionMemory:
    """Ids and numbers of this session only (in process memory)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._messages: dict[str, MessageRef] = {}
        self._images: list[MessageRef] = []

    def next_id(self) -> str:
        """``s1``, ``s2``..."""
        return f"s{next(self._ids)}"

    def remember(self, message: MessageRef) -> None:
        """Keep ``message`` for :meth:`message`."""
        self._messages[message.id] = message

    def message(self, message_id: str) -> MessageRef | None:
        """A message of this session."""
        return self._messages.get(message_id)

    def number_image(self, message: MessageRef) -> int:
        """The next number."""
        self._images.append(message)
        return len(self._images)

    def image(self, number: int) -> MessageRef | None:
        """The image of that number, if this session showed one."""
        return self._images[number - 1] if 0 < number <= len(self._images) else None


class ShellAdapter:
    """Prints posts, edits, uploads and notices to ``out``; saves images under ``image_dir``.
    ``images`` and ``messages`` are this session's; ``memory`` may know earlier ones."""

    platform = PLATFORM

    def __init__(self, *, out: TextIO, image_dir: Path, memory: ShellMemory | None = None) -> None:
        self.out = out
        self.image_dir = image_dir
        self.memory: ShellMemory = memory or SessionMemory()
        self.images: list[MessageRef] = []
        self.messages: dict[str, MessageRef] = {}
        self._lock = threading.Lock()
        self._last: str | None = None  # id of the message printed last
        self._tty = bool(getattr(out, "isatty", lambda: False)())

    def post(
        self,
        *,
        channel: str,
        text: str,
        thread: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> MessageRef:
        """Print a message (indented when it is in a thread)."""
        with self._lock:
            ref = self._new_ref(channel=channel, thread=thread)
            self._print(self._format(ref, text), ref.id)
            return ref

    def edit(
        self, *, message: MessageRef, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """Rewrite the last line in place on a terminal; print the new text otherwise."""
        with self._lock:
            lines = self._format(message, text)
            if self._tty and self._last == message.id and "\n" not in lines:
                self.out.write(_UP_AND_CLEAR)
            self._print(lines, message.id)

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
        """Save the file and print its caption and path; a ``votable`` image gets the
        number that ``:react`` takes."""
        with self._lock:
            self.image_dir.mkdir(parents=True, exist_ok=True)
            path = self.image_dir / Path(filename).name  # names come from the bot; stay inside
            path.write_bytes(data)
            ref = self._new_ref(channel=channel, thread=thread)
            label = ""
            if votable:
                self.images.append(ref)
                label = f"[#{self.memory.number_image(ref)}] "
            self._print(self._format(ref, f"{label}{text}\n    {path}"), ref.id)
            return ref

    def notify(self, *, channel: str, user: str, text: str, thread: str | None = None) -> None:
        """Print a notice meant for one user."""
        with self._lock:
            self._print(_plain(f"  (only {user}) {text}"), None)

    def upload_private(
        self, *, channel: str, user: str, data: bytes, filename: str, text: str
    ) -> None:
        """Save the file and print its caption and path for ``user`` (one person at a
        terminal: no direct messages to go by)."""
        with self._lock:
            self.image_dir.mkdir(parents=True, exist_ok=True)
            path = self.image_dir / Path(filename).name  # names come from the bot; stay inside
            path.write_bytes(data)
            self._print(_plain(f"  (only {user}) {text}\n    {path}"), None)

    def say(self, text: str) -> None:
        """Print a line of the shell itself (replies, help)."""
        with self._lock:
            self._print(_plain(text), None)

    def find(self, token: str) -> MessageRef | None:
        """The message ``#N``/``N`` (image number) or ``sN`` (message id) names."""
        key = token.lstrip("#")
        if _IMAGE_NUMBER.fullmatch(key):
            return self.memory.image(int(key))
        return self.memory.message(token)

    def _new_ref(self, *, channel: str, thread: str | None) -> MessageRef:
        ref = MessageRef(PLATFORM, channel, self.memory.next_id(), thread)
        self.memory.remember(ref)
        self.messages[ref.id] = ref
        return ref

    def _format(self, ref: MessageRef, text: str) -> str:
        text = _plain(text)
        if ref.thread is None:
            return f"\n[{ref.id}] " + text.replace("\n", "\n       ")
        return "  \u2502 " + text.replace("\n", "\n  \u2502 ")

    def _print(self, text: str, message_id: str | None) -> None:
        self.out.write(text + "\n")
        self.out.flush()
        self._last = message_id


def _plain(text: str) -> str:
    """Neutral markup to terminal text: ``<@U1>`` becomes ``@U1``; control characters and
    escape sequences are removed (newlines and tabs stay); escaped user text is shown as typed."""
    return unescape(_MENTION.sub(r"@\1", _CONTROLS.sub("", text)))
