"""``ChatAdapter`` for the terminal: a channel printed as it grows. A translator only.

Threads are indented under their first message; images are written to files and shown
with a number (``[#2]``) that ``:react 2 approve`` refers to. On a terminal, an edit of the
last line (the progress bar) rewrites it in place; elsewhere (a script, a pipe) every edit
is printed as a new line so the transcript shows the progress.

Text from users reaches the terminal without control characters: an escape sequence in a
prompt could otherwise clear the screen, move the cursor or retitle the window.
"""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path
from typing import Any, TextIO

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


class ShellAdapter:
    """Prints posts, edits, uploads and notices to ``out``; saves images under ``image_dir``."""

    platform = PLATFORM

    def __init__(self, *, out: TextIO, image_dir: Path) -> None:
        self.out = out
        self.image_dir = image_dir
        self.images: list[MessageRef] = []
        self.messages: dict[str, MessageRef] = {}
        self._ids = itertools.count(1)
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
            ref = MessageRef(PLATFORM, channel, f"s{next(self._ids)}", thread)
            self.messages[ref.id] = ref
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
            ref = MessageRef(PLATFORM, channel, f"s{next(self._ids)}", thread)
            self.messages[ref.id] = ref
            label = ""
            if votable:
                self.images.append(ref)
                label = f"[#{len(self.images)}] "
            self._print(self._format(ref, f"{label}{text}\n    {path}"), ref.id)
            return ref

    def notify(self, *, channel: str, user: str, text: str, thread: str | None = None) -> None:
        """Print a notice meant for one user."""
        with self._lock:
            self._print(_plain(f"  (only {user}) {text}"), None)

    def say(self, text: str) -> None:
        """Print a line of the shell itself (replies, help)."""
        with self._lock:
            self._print(_plain(text), None)

    def find(self, token: str) -> MessageRef | None:
        """The message ``#N``/``N`` (image number) or ``sN`` (message id) names."""
        key = token.lstrip("#")
        if _IMAGE_NUMBER.fullmatch(key):
            number = int(key)
            return self.images[number - 1] if 0 < number <= len(self.images) else None
        return self.messages.get(token)

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
