"""Reading job ids and specs out of a conversation (shared by the follow-up tests)."""

from __future__ import annotations

import re

from bot.testing.chat import FakeChat, FakeMessage
from engine.spec import JobSpec


def job_id_in(text: str) -> str:
    """The first ``job `id``` a text names."""
    found = re.search(r"job `([A-Za-z0-9_-]+)`", text)
    assert found, text
    return found.group(1)


def card(chat: FakeChat, thread: FakeMessage | object, marker: str) -> FakeMessage:
    """The one message of the thread that starts with ``marker`` (a follow-up's card)."""
    ref = thread.ref if isinstance(thread, FakeMessage) else thread
    found = [m for m in chat.thread(ref) if m.text.startswith(marker)]  # type: ignore[arg-type]
    assert len(found) == 1, chat.dump()
    return found[0]


def spec_of(chat: FakeChat, job_id: str) -> JobSpec:
    """The spec the bot recorded for ``job_id`` (what it queued)."""
    record = chat.service.state.job(job_id)
    assert record is not None, job_id
    return record.spec
