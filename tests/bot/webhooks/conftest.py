"""Fixtures of the webhook tests: a local ``receiver`` (the CMS), bot settings pointing at it
with short waits, and the receiver-side ``verify`` taken from docs/webhooks.md."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot.settings import BotSettings
from engine.settings import REPO_ROOT
from tests.bot.webhooks.receiver import Receiver

SECRET = "whsec-test-4f1c2b"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture()
def bot_settings(bot_settings: BotSettings, receiver: Receiver) -> BotSettings:
    """The test's bot settings with the webhook on, retried after 20 ms, 40 ms ... 100 ms."""
    return bot_settings.model_copy(
        update={
            "webhook_url": receiver.url,
            "webhook_secret": SecretStr(SECRET),
            "webhook_attempts": 4,
            "webhook_backoff_s": 0.02,
            "webhook_backoff_max_s": 0.1,
            "webhook_timeout_s": 1.0,
        }
    )


@pytest.fixture(scope="session")
def verify() -> Callable[[bytes, Any, bytes], bool]:
    """The receiver's check exactly as docs/webhooks.md shows it."""
    text = (REPO_ROOT / "docs" / "webhooks.md").read_text()
    match = re.search(r"## Verifying a delivery.*?```python\n(.*?)```", text, re.S)
    assert match, "docs/webhooks.md lost its verification snippet"
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)
    return namespace["verify"]
