"""``proofroom store prune`` as an operator runs it: a ``proofroom`` process configured by its
environment, the approved images read from the export folder the review desk writes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

from bot.ports import MessageRef
from bot.records import ImageRecord
from bot.review.export import export_image
from engine.job_images import store_image
from engine.settings import REPO_ROOT
from engine.spec import JobSpec, Mode
from engine.store import ArtifactStore, LocalStore, S3Store
from tests.engine.jobs_fixtures import tiny_spec
from tests.engine.store.conftest import START, Clock

# The command runs with its clock frozen here (time-machine, in the child process).
FROZEN = (
    "import sys, time_machine\n"
    "from datetime import datetime\n"
    "from bot.cli import main\n"
    "with time_machine.travel(datetime.fromisoformat(sys.argv[1]), tick=False):\n"
    "    sys.exit(main(sys.argv[2:]))\n"
)


def proofroom(
    *args: str, env: dict[str, str], now: datetime | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``proofroom ARGS`` in a process of its own (at ``now`` when given)."""
    command = (
        [sys.executable, "-c", FROZEN, now.isoformat(), *args]
        if now is not None
        else [sys.executable, "-m", "bot.cli", *args]
    )
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def approve(store: ArtifactStore, spec: JobSpec, artifact_id: str, *, folder: Path) -> None:
    """Export the image as the review desk does when it is approved."""
    record = ImageRecord(
        message=MessageRef(platform="slack", channel="C1", id="m1"),
        job_id=spec.id,
        index=0,
        seed=spec.seed,
        artifact_id=artifact_id,
        width=8,
        height=8,
        requester="U1",
        root="slack:C1:m1",
    )
    export_image(store=store, image=record, spec=spec, approvers=["U2"], folder=folder)


def test_prune_keeps_what_the_export_folder_approved(tmp_path: Path, clock: Clock) -> None:
    store = LocalStore(tmp_path / "artifacts", clock=clock)
    clock.now = START - timedelta(days=45)
    init = store.put(b"\x89PNG init", suffix=".png", meta={"role": "init"})
    spec = tiny_spec(mode=Mode.img2img, init_image=init)
    approved = store_image(spec, 0, Image.new("RGB", (8, 8)), prompt="p", store=store)
    approve(store, spec, approved.artifact_id, folder=tmp_path / "approved")
    old = store_image(tiny_spec(), 0, Image.new("RGB", (8, 8)), prompt="p", store=store)
    env = {"PROOFROOM_DATA_DIR": str(tmp_path), "PROOFROOM_RETENTION_DAYS": "30"}

    dry = proofroom("store", "prune", "--dry-run", env=env, now=START)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove {old.artifact_id}" in dry.stdout
    assert store.exists(old.artifact_id)

    done = proofroom("store", "prune", env=env, now=START)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"removed {old.artifact_id}" in lines
    assert f"kept {approved.artifact_id} (approved)" in lines
    assert f"kept {init} (init image of {approved.artifact_id})" in lines
    assert lines[-1].startswith("1 artifact(s) stored before 2026-10-21 (30 days) removed; 2 kept")
    assert not store.exists(old.artifact_id)
    assert store.exists(approved.artifact_id) and store.exists(init)


def test_prune_refuses_without_the_export_folder(tmp_path: Path, clock: Clock) -> None:
    store = LocalStore(tmp_path / "artifacts", clock=clock)
    clock.now = START - timedelta(days=45)
    old = store.put(b"x", suffix=".png")
    env = {"PROOFROOM_DATA_DIR": str(tmp_path), "PROOFROOM_RETENTION_DAYS": "30"}

    done = proofroom("store", "prune", env=env, now=START)

    assert done.returncode == 2
    assert "no folder of approved images at" in done.stderr and "--approved DIR" in done.stderr
    assert store.exists(old)


def test_prune_does_nothing_while_retention_is_off(tmp_path: Path) -> None:
    done = proofroom("store", "prune", env={"PROOFROOM_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0
    assert "Retention is off" in done.stdout


def test_prune_reads_the_s3_store_from_the_settings(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    # Stored in 2020: older than 30 days whatever today is, so the clock can stay real (S3
    # requests are signed with the time).
    clock = Clock(datetime(2020, 1, 1, tzinfo=UTC))
    store = S3Store(
        bucket=s3_bucket,
        prefix="prune-command",
        endpoint_url=s3_endpoint,
        cache_dir=tmp_path / "cache",
        clock=clock,
    )
    old = store.put(b"x", suffix=".png", meta={"job_id": "j1"})
    (tmp_path / "approved").mkdir()
    env = {
        "PROOFROOM_DATA_DIR": str(tmp_path),
        "PROOFROOM_STORE": "s3",
        "PROOFROOM_S3_BUCKET": s3_bucket,
        "PROOFROOM_S3_PREFIX": "prune-command",
        "PROOFROOM_S3_ENDPOINT_URL": s3_endpoint,
        "PROOFROOM_RETENTION_DAYS": "30",
    }

    done = proofroom("store", "prune", env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removed {old}" in done.stdout.splitlines()
    assert not store.exists(old) and store.list_job("j1") == []
