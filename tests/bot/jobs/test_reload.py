"""Admins: ``/imagine reload`` rescans the drop-in folders; ``/imagine loras``, ``models``
and ``embeddings`` list what is there and the files that cannot be used, and why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import redis as redis_lib
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from bot.settings import BotSettings
from bot.testing.chat import FakeChat
from engine import tiny
from engine.settings import Settings
from tests.engine.lora_fixtures import to_kohya

ADMIN = "U-ADMIN"


def write_sd15_lora(path: Path) -> None:
    """A kohya-format LoRA with SD1.5 shapes (768-wide text encoder and cross-attention):
    only the keys and shapes the folder scan reads, zeros for weights."""
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    unet = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_numpy(
        {
            f"{te}.lora_down.weight": np.zeros((4, 768), np.float16),
            f"{te}.lora_up.weight": np.zeros((768, 4), np.float16),
            f"{te}.alpha": np.array(4.0, np.float16),
            f"{unet}.lora_down.weight": np.zeros((4, 768), np.float16),
            f"{unet}.lora_up.weight": np.zeros((320, 4), np.float16),
            f"{unet}.alpha": np.array(4.0, np.float16),
        },
        str(path),
    )


@pytest.fixture()
def admin_chat(settings: Settings, redis: redis_lib.Redis) -> FakeChat:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None, export_dir=settings.data_dir / "approved", admin_ids=frozenset({ADMIN})
    )
    chat = FakeChat(settings=settings, redis=redis, bot_settings=bot_settings, worker=False)
    yield chat
    chat.close()


def test_an_admin_reload_lists_a_dropped_lora_and_says_why_a_broken_file_is_not(
    admin_chat: FakeChat, settings: Settings
) -> None:
    settings.lora_dir.mkdir(parents=True, exist_ok=True)
    assert "brand-y" not in admin_chat.command("/imagine loras").text
    write_sd15_lora(settings.lora_dir / "Brand_Y.safetensors")
    whole = (settings.lora_dir / "Brand_Y.safetensors").read_bytes()
    (settings.lora_dir / "broken.safetensors").write_bytes(whole[: len(whole) // 2])

    reply = admin_chat.command("/imagine reload", user=ADMIN).text
    assert reply.startswith("Reloaded: ")
    assert "1 file(s) cannot be used" in reply
    listing = admin_chat.command("/imagine loras").text
    assert "\u2022 `brand-y` for sd15" in listing
    assert "Files that cannot be used:" in listing
    broken = next(line for line in listing.splitlines() if "broken.safetensors" in line)
    assert "(LoRA)" in broken
    assert str(settings.lora_dir) not in listing  # file names, never the server's paths


def test_only_admins_reload(admin_chat: FakeChat, settings: Settings) -> None:
    reply = admin_chat.command("/imagine reload", user="U-SOMEONE").text
    assert reply.startswith("Only admins can reload the catalog")
    assert admin_chat.command("/imagine reload", user=ADMIN).text.startswith("Reloaded: ")


def test_without_admins_the_approvers_are_admins(settings: Settings, redis) -> None:
    bot_settings = BotSettings(_env_file=None, approver_ids=frozenset({"U-APPROVER"}))  # type: ignore[call-arg]
    assert bot_settings.is_admin("U-APPROVER")
    assert not bot_settings.is_admin("U-SOMEONE")
    assert not BotSettings(_env_file=None).is_admin("U-ANYONE")  # type: ignore[call-arg]
    roles = BotSettings(_env_file=None, admin_roles=frozenset({"ops"}))  # type: ignore[call-arg]
    assert roles.is_admin("U-SOMEONE", frozenset({"ops"}))
    assert not roles.is_admin("U-APPROVER", frozenset({"art"}))


def test_admins_come_from_the_environment_as_comma_separated_lists(monkeypatch) -> None:
    monkeypatch.setenv("PROOFROOM_ADMIN_IDS", "U1, U2")
    monkeypatch.setenv("PROOFROOM_ADMIN_ROLES", "ops")
    bot_settings = BotSettings(_env_file=None)  # type: ignore[call-arg]
    assert bot_settings.admin_ids == {"U1", "U2"}
    assert bot_settings.is_admin("U2") and bot_settings.is_admin("U9", frozenset({"ops"}))


def test_a_second_bot_sees_a_reload_before_its_next_command(
    admin_chat: FakeChat, settings: Settings, redis: redis_lib.Redis
) -> None:
    other = FakeChat(settings=settings, redis=redis, worker=False)
    try:
        assert "brand-y" not in other.command("/imagine loras").text
        settings.lora_dir.mkdir(parents=True, exist_ok=True)
        write_sd15_lora(settings.lora_dir / "brand-y.safetensors")
        admin_chat.command("/imagine reload", user=ADMIN)
        assert "\u2022 `brand-y` for sd15" in other.command("/imagine loras").text
    finally:
        other.close()


def test_embeddings_are_listed_or_their_absence_explained(admin_chat: FakeChat) -> None:
    reply = admin_chat.command("/imagine embeddings").text
    assert reply.startswith("No embeddings are installed")
    assert "/imagine reload" in reply


def test_a_worker_renders_a_lora_dropped_in_after_it_started(
    chat: FakeChat, settings: Settings
) -> None:
    """The embedded worker loaded its catalog at start; after an admin's reload its next
    job knows the new LoRA too (engine.reloads, checked before each job)."""
    chat.set_policy(admin_ids=frozenset({ADMIN}))
    command = "/imagine a red cat --lora kohya-style:0.8 --n 1 --steps 2 --seed 5"
    assert chat.command(command).text.startswith("Unknown LoRA `kohya-style`")
    settings.lora_dir.mkdir(parents=True, exist_ok=True)
    peft = load_file(str(tiny.lora_file("tiny-lora-a", cache_dir=settings.model_cache_dir)))
    save_file(
        to_kohya(peft),
        str(settings.lora_dir / "kohya-style.safetensors"),
        {"ss_base_model_version": "sd_v1"},  # kohya-ss names the base model, as here
    )
    assert chat.command("/imagine reload", user=ADMIN).text.startswith("Reloaded: ")
    reply = chat.command(command)
    assert reply.text.startswith("Queued job"), reply.text
    chat.run_until_idle()
    shown = [m.text for m in chat.thread(reply.thread)]
    assert len(chat.images(reply.thread)) == 1, shown  # rendered, not failed: unknown LoRA
