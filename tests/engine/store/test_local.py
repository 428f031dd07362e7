"""What is particular to each store beyond the contract: the local folder's layout and the
folders written before the job index, the S3 store's errors, and the choice by settings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.store import (
    ArtifactNotFoundError,
    ArtifactStoreError,
    LocalStore,
    S3Store,
    store_from_settings,
)
from tests.engine.store.conftest import Clock
from tests.redis_server import free_port


def test_local_files_are_in_day_folders_with_a_json_sidecar(tmp_path: Path, clock: Clock) -> None:
    store = LocalStore(tmp_path, clock=clock)
    artifact_id = store.put(b"\x89PNG data", suffix=".png", meta={"job_id": "j1", "index": 0})
    assert store.path(artifact_id) == tmp_path / "2026-11-20" / artifact_id
    sidecar = tmp_path / "2026-11-20" / f"{artifact_id}.json"
    assert json.loads(sidecar.read_text()) == {"job_id": "j1", "index": 0}


def test_a_folder_written_before_the_job_index_lists_by_job(tmp_path: Path, clock: Clock) -> None:
    store = LocalStore(tmp_path, clock=clock)
    ids = [store.put(b"x", suffix=".png", meta={"job_id": "old", "index": i}) for i in range(2)]
    shutil.rmtree(tmp_path / "jobs")  # as an older version left it: files and sidecars only

    reopened = LocalStore(tmp_path, clock=clock)
    assert reopened.list_job("old") == sorted(ids)
    assert reopened.get(ids[0]) == b"x"  # old ids read as before
    newer = reopened.put(b"y", suffix=".png", meta={"job_id": "old", "index": 2})
    assert reopened.list_job("old") == sorted([*ids, newer])


def test_delete_leaves_no_empty_folders(tmp_path: Path, clock: Clock) -> None:
    store = LocalStore(tmp_path, clock=clock)
    artifact_id = store.put(b"x", suffix=".png", meta={"job_id": "j1"})
    store.delete(artifact_id)
    assert not (tmp_path / "2026-11-20").exists()
    assert not (tmp_path / "jobs" / "j1").exists()


def test_store_from_settings_is_local_by_default(tmp_path: Path) -> None:
    store = store_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(store, LocalStore)
    artifact_id = store.put(b"x", suffix=".json")
    assert store.path(artifact_id).is_relative_to(tmp_path / "artifacts")


def test_store_from_settings_makes_the_s3_store(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        store="s3",
        s3_bucket=s3_bucket,
        s3_prefix="from-settings",
        s3_endpoint_url=s3_endpoint,
        signed_url_expires_s=90,
    )
    store = store_from_settings(settings)
    assert isinstance(store, S3Store)
    artifact_id = store.put(b"x", suffix=".png", meta={"job_id": "j9"})
    assert store.list_job("j9") == [artifact_id]
    assert store.path(artifact_id).is_relative_to(tmp_path / "artifact-cache")
    assert "X-Amz-Expires=90" in (store.url(artifact_id) or "")
    assert not (tmp_path / "artifacts").exists()


def test_an_s3_store_without_a_bucket_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PROOFROOM_S3_BUCKET"):
        store_from_settings(Settings(data_dir=tmp_path, store="s3"))


def test_a_missing_bucket_and_an_unreachable_server_are_store_errors(
    tmp_path: Path, s3_endpoint: str
) -> None:
    missing = S3Store(bucket="no-such-bucket", endpoint_url=s3_endpoint, cache_dir=tmp_path)
    with pytest.raises(ArtifactStoreError, match="no-such-bucket.*NoSuchBucket.*create it"):
        missing.put(b"x", suffix=".png")

    nobody = f"http://127.0.0.1:{free_port()}"
    down = S3Store(bucket="b", endpoint_url=nobody, cache_dir=tmp_path)
    with pytest.raises(ArtifactStoreError, match="did not answer.*PROOFROOM_S3_ENDPOINT_URL"):
        down.get("20261120-0123456789abcdef.png")
    with pytest.raises(ArtifactNotFoundError):  # a bad id fails before any request
        down.get("../x.png")


def test_importing_the_store_imports_neither_torch_nor_boto3() -> None:
    code = (
        "import sys, engine.store, engine.store.retention\n"
        "heavy = [m for m in ('torch', 'boto3', 'botocore') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
