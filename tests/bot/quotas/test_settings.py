"""The quota settings as an operator writes them: nested ``PROOFROOM_QUOTAS__*`` variables
(and a ``.env`` file), blank meaning unlimited, the allow list comma-separated."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.quotas.policy import Quotas
from bot.settings import BotSettings


def test_nested_variables_reach_the_quotas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROOFROOM_QUOTAS__IMAGES_PER_DAY", "40")
    monkeypatch.setenv("PROOFROOM_QUOTAS__BULK_IMAGES_PER_DAY", "500")
    monkeypatch.setenv("PROOFROOM_QUOTAS__CONCURRENT_JOBS", "3")
    monkeypatch.setenv("PROOFROOM_QUOTAS__COMMANDS_PER_MINUTE", "")  # blank: no limit
    monkeypatch.setenv("PROOFROOM_ALLOWED_CHANNELS", "C0123, 1200000000000000001,")
    settings = BotSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.quotas == Quotas(images_per_day=40, bulk_images_per_day=500, concurrent_jobs=3)
    assert settings.allowed_channels == {"C0123", "1200000000000000001"}


def test_a_dotenv_file_sets_them_too(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("PROOFROOM_QUOTAS__QUEUED_INTERACTIVE_JOBS=2\nPROOFROOM_TIMEZONE=Asia/Tokyo\n")
    settings = BotSettings(_env_file=env)  # type: ignore[call-arg]
    assert settings.quotas.queued_interactive_jobs == 2
    assert settings.quotas.images_per_day is None and settings.timezone == "Asia/Tokyo"


def test_nonsense_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROOFROOM_QUOTAS__CONCURRENT_JOBS", "0")
    with pytest.raises(ValidationError, match="concurrent_jobs"):
        BotSettings(_env_file=None)  # type: ignore[call-arg]


def test_the_shipped_example_env_file_sets_no_limit() -> None:
    example = Path(__file__).resolve().parents[3] / ".env.example"
    assert "PROOFROOM_QUOTAS__IMAGES_PER_DAY" in example.read_text(encoding="utf-8")
    settings = BotSettings(_env_file=example)  # type: ignore[call-arg]
    assert settings.quotas == Quotas() and settings.allowed_channels == frozenset()
