"""``proofroom doctor``'s QA line: the NSFW check is on only with a local model folder."""

from __future__ import annotations

from pathlib import Path

from bot.doctor.qa import qa_check
from engine.settings import QaSettings


def test_without_a_folder_the_nsfw_check_is_off_and_that_is_fine() -> None:
    check = qa_check(QaSettings())
    assert check.status == "ok"
    assert "policy flag" in check.detail and "NSFW check off" in check.detail


def test_a_folder_that_is_missing_or_incomplete_is_a_warning_with_the_fix(tmp_path: Path) -> None:
    missing = qa_check(QaSettings(nsfw_model=tmp_path / "nowhere"))
    assert missing.status == "warn" and "is not a folder" in missing.detail
    assert "nothing is downloaded" in missing.fix
    (tmp_path / "config.json").write_text("{}")
    empty = qa_check(QaSettings(nsfw_model=tmp_path))
    assert empty.status == "warn" and "no config.json and weights" in empty.detail


def test_a_model_folder_turns_the_nsfw_check_on(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    check = qa_check(QaSettings(nsfw_model=tmp_path, policy="rerender"))
    assert check.status == "ok"
    assert "policy rerender" in check.detail and f"NSFW check on ({tmp_path}" in check.detail


def test_qa_turned_off_says_so() -> None:
    assert "automated QA is off" in qa_check(QaSettings(enabled=False)).detail
