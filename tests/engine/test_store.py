"""The local artifact store: ids, atomic writes, and ids that could escape the root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.store import ArtifactNotFoundError, LocalStore, store_from_settings


def test_put_get_path_exists_and_meta(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    artifact_id = store.put(b"\x89PNG data", suffix=".png", meta={"job_id": "j1", "index": 0})
    assert artifact_id.endswith(".png")
    assert store.exists(artifact_id)
    assert store.get(artifact_id) == b"\x89PNG data"
    assert store.path(artifact_id).read_bytes() == b"\x89PNG data"
    assert store.path(artifact_id).is_relative_to(tmp_path)
    assert store.path(artifact_id).parent.name.count("-") == 2  # yyyy-mm-dd
    assert store.meta(artifact_id) == {"job_id": "j1", "index": 0}
    assert not list(tmp_path.rglob("*.tmp"))


def test_ids_are_unique(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    ids = {store.put(b"x", suffix=".png") for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize(
    "bad",
    [
        "../secret.png",
        "20250101-0123456789abcdef.png/../x",
        "a/b.png",
        "",
        "..",
        "/etc/passwd",
        "20250101-0123456789abcdef",
        "20250101-0123456789ABCDEF.png",
        "20250101-../../x.png",
    ],
)
def test_rejects_ids_that_are_not_ours(tmp_path: Path, bad: str) -> None:
    store = LocalStore(tmp_path)
    assert not store.exists(bad)
    with pytest.raises(ArtifactNotFoundError):
        store.get(bad)
    with pytest.raises(ArtifactNotFoundError):
        store.path(bad)


def test_unknown_but_well_formed_id_is_not_found(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    missing = "20250101-0123456789abcdef.png"
    assert not store.exists(missing)
    with pytest.raises(ArtifactNotFoundError):
        store.get(missing)


@pytest.mark.parametrize("suffix", ["png", "./png", ".PNG/..", ".toolongsuffix"])
def test_rejects_bad_suffixes(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ValueError):
        LocalStore(tmp_path).put(b"x", suffix=suffix)


def test_store_from_settings_uses_the_artifacts_dir(tmp_path: Path) -> None:
    store = store_from_settings(Settings(data_dir=tmp_path))
    artifact_id = store.put(b"x", suffix=".json")
    assert store.path(artifact_id).is_relative_to(tmp_path / "artifacts")


def test_importing_store_does_not_import_torch() -> None:
    code = "import sys, engine.store; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
