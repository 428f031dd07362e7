"""pytest fixtures for conversations with the bot: ``chat`` (a :class:`bot.testing.chat.FakeChat`
with a real embedded worker on the test's Redis) and ``bot_settings``.

They build on the ``settings`` and ``redis`` fixtures of the project's ``tests/conftest.py``
(a real Redis, a key prefix per test). Enable with ``from bot.testing.plugin import *`` in a
conftest, or ``-p bot.testing.plugin``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib

from bot.settings import BotSettings
from bot.testing.chat import FakeChat
from engine.settings import Settings


@pytest.fixture()
def bot_settings(settings: Settings) -> BotSettings:
    """Bot settings of this test alone: defaults, no ``.env``, export under the test's data dir."""
    return BotSettings(_env_file=None, export_dir=settings.data_dir / "approved")  # type: ignore[call-arg]


@pytest.fixture()
def chat(
    settings: Settings, redis: redis_lib.Redis, bot_settings: BotSettings
) -> Iterator[FakeChat]:
    """A chat channel wired to the real queue, event stream, store and an embedded worker
    rendering the tiny model."""
    conversation = FakeChat(settings=settings, redis=redis, bot_settings=bot_settings)
    try:
        yield conversation
    finally:
        conversation.close()


__all__ = ["bot_settings", "chat"]
