"""Fixtures of the hostile-input suite: a catalog of its own (one template, the tiny model,
one LoRA, written into the test's folder: no shipped template or calendar is read), a chat
on the real queue with no worker (so what a command queued stays in the queue to be
counted), and :func:`outcome`, which runs one command and says what it did to the queues."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib

from bot.ports import Attachment
from bot.settings import BotSettings
from bot.testing.chat import FakeChat
from engine.catalog import Catalog
from engine.settings import Settings
from tests.bot.conftest import queued_jobs

TEMPLATE_YAML = """\
poster:
  description: a product poster
  prompt: "poster of {product}, {style}"
  negative: "text, watermark"
  variables:
    product:
      description: what the poster shows
      aliases: [product_name]
    style:
      default: minimalist
"""
MODELS_YAML = """\
tiny:
  source: builtin:tiny
  family: sd15
  width: 64
  height: 64
  steps: 2
  sampler: Euler a
"""
LORAS_YAML = """\
tiny-style:
  source: builtin:tiny-lora-a
  families: [sd15]
  weight: 0.8
"""
# What the service answers when a command failed on our side (``bot.texts.try_again``):
# the sign of a crash that the suite exists to find.
CRASHED = "Something went wrong on our side"


@functools.cache
def catalog_at(root: Path) -> Catalog:
    """The catalog of ``root``, loaded once per test (not once per example)."""
    return Catalog.load(root)


def write_catalog(root: Path) -> Path:
    """The suite's catalog files under ``root`` (its ``templates_dir``)."""
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "hostile.yaml").write_text(TEMPLATE_YAML, encoding="utf-8")
    (root / "models.yaml").write_text(MODELS_YAML, encoding="utf-8")
    (root / "loras.yaml").write_text(LORAS_YAML, encoding="utf-8")
    return root


@pytest.fixture()
def hostile_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test's settings with the suite's own catalog and no content calendars."""
    templates = write_catalog(tmp_path / "catalog")
    return settings.model_copy(update={"templates_dir": templates})


@pytest.fixture()
def quiet_chat(
    hostile_settings: Settings, redis: redis_lib.Redis, tmp_path: Path
) -> Iterator[FakeChat]:
    """A chat on the real queue and store with no worker: queued jobs stay queued."""
    calendars = tmp_path / "no-calendars"
    calendars.mkdir()
    bot = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=hostile_settings.data_dir / "approved",
        calendars_dir=calendars,
        default_model="tiny",
        admin_ids=frozenset({"U1"}),
    )
    conversation = FakeChat(settings=hostile_settings, redis=redis, bot_settings=bot, worker=False)
    try:
        yield conversation
    finally:
        conversation.close()


@dataclass(frozen=True)
class Outcome:
    """What one command did: the reply, how many jobs it added to the queues, and whether
    it opened a thread (a new message in the channel)."""

    text: str
    queued: int
    opened: bool = False


def outcome(chat: FakeChat, text: str, *, attachments: tuple[Attachment, ...] = ()) -> Outcome:
    """Run ``text`` as user U2 (not an admin) and count the jobs it queued."""
    before = queued_jobs(chat.settings, chat.redis)
    reply = chat.command(text, user="U2", attachments=attachments)
    queued = queued_jobs(chat.settings, chat.redis) - before
    return Outcome(reply.text, queued, opened=reply.thread is not None)


def stored_files(settings: Settings) -> list[Path]:
    """Every file in the local artifact store: a refused command must leave none."""
    root = settings.artifacts_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_answered(result: Outcome, *, queued_when: str = "Queued") -> None:
    """Every command gets a sentence, never a crash; a refusal queues nothing and opens no
    thread, an accepted command queues what it says (one job; a batch: checked by the
    caller) and opens its thread."""
    assert result.text.strip(), result
    assert CRASHED not in result.text, result
    if result.text.startswith(queued_when):
        assert result.queued >= 1 and result.opened, result
    else:
        assert result.queued == 0 and not result.opened, result
