"""``proofroom doctor`` run as an operator runs it: a process of its own, configured by its
environment, against a real Redis and a real worker process (the token checks against the
fakes of the Slack and Discord APIs are in ``test_checks``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib

from engine.settings import REPO_ROOT, Settings
from tests.engine.jobs_fixtures import WorkerProcess
from tests.redis_server import free_port

LINE = re.compile(r"^(ok|warn|fail|skip)\s+(\w+)\s+\S")


def write_templates(folder: Path) -> Path:
    """A catalog of the offline tiny model alone (plus one Hub model nobody downloaded)."""
    (folder / "prompts").mkdir(parents=True)
    (folder / "models.yaml").write_text(
        "tiny:\n  source: builtin:tiny\n  family: sd15\n"
        "absent:\n  source: owner/not-downloaded\n  family: sdxl\n"
    )
    return folder


@pytest.fixture()
def templates(tmp_path: Path) -> Path:
    return write_templates(tmp_path / "templates")


def doctor(
    tmp_path: Path,
    *,
    templates: Path,
    redis_url: str | None,
    args: tuple[str, ...] = (),
    **env: str,
) -> subprocess.CompletedProcess[str]:
    variables = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "DISCORD_", "REDIS_URL", "PROOFROOM_"))
    }
    variables.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "HF_HUB_OFFLINE": "1",
            "PROOFROOM_TEMPLATES_DIR": str(templates),
            "PROOFROOM_DATA_DIR": str(tmp_path / "data"),
            "PROOFROOM_MODEL_DIR": str(tmp_path / "models"),
            "PROOFROOM_LORA_DIR": str(tmp_path / "loras"),
            "PROOFROOM_EMBEDDING_DIR": str(tmp_path / "embeddings"),
            "PROOFROOM_VAE_DIR": str(tmp_path / "vaes"),
            "PROOFROOM_A1111_DIR": str(tmp_path / "webui"),
            **env,
        }
    )
    if redis_url:
        variables["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "doctor", *args],
        cwd=tmp_path,  # no .env of the repository
        env=variables,
        capture_output=True,
        text=True,
        timeout=300,
    )


def lines_of(done: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    """The report's lines by check name; every line but the summary is a check line."""
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    *checks, last = done.stdout.strip().splitlines()
    assert re.search(r"checks passed|failed, \d+ to look at", last), last
    by_name: dict[str, list[str]] = {}
    for line in checks:
        match = LINE.match(line)
        assert match, f"not a check line: {line!r}"
        by_name.setdefault(match[2], []).append(line)
    return by_name


@pytest.mark.slow
def test_with_redis_url_a_worker_of_one_family_is_listed_and_the_other_family_is_named(
    tmp_path: Path, templates: Path, settings: Settings, redis: redis_lib.Redis
) -> None:
    env = {"PROOFROOM_KEY_PREFIX": settings.key_prefix}
    before = doctor(tmp_path, templates=templates, redis_url=settings.redis_url, **env)

    assert before.returncode == 1
    lines = lines_of(before)
    assert re.match(
        r"(ok|warn)\s+redis\s+Redis \S+ at 127\.0\.0\.1:\d+/\d+ answers", lines["redis"][0]
    )
    assert lines["slack"][0].startswith("skip") and lines["discord"][0].startswith("skip")
    assert any(re.match(r"ok\s+models\s+model tiny \(sd15\) present", x) for x in lines["models"])
    absent = [x for x in lines["models"] if "model absent (sdxl)" in x]
    assert (
        absent and absent[0].startswith("warn") and "hf download owner/not-downloaded" in absent[0]
    )
    assert re.match(r"(ok|warn)\s+disk\s+[\d.]+ GiB free", lines["disk"][0])
    assert lines["workers"] == [
        "fail  workers   no live worker: every job waits; fix: start `proofroom worker` on a "
        "GPU host (docker compose up -d worker)"
    ]

    worker = WorkerProcess(
        settings.model_copy(update={"templates_dir": templates}),
        log_path=tmp_path / "worker.log",
        args=["--family", "sd15"],
    )
    try:
        worker.wait_ready(redis)
        after = doctor(tmp_path, templates=templates, redis_url=settings.redis_url, **env)
    finally:
        worker.stop()

    lines = lines_of(after)
    overall, *families = lines["workers"]
    assert overall.startswith("ok") and f"1 live: {worker.name} on " in overall
    assert "(pools sd15)" in overall
    assert families[0] == "ok    workers   sd15: tiny (1 worker)"
    assert families[1].startswith("warn  workers   sdxl: absent (0 workers)")
    assert "fix: start `proofroom worker --pools sdxl`" in families[1]
    # The only failure left would be the model that is not downloaded, which is a warning.
    assert after.returncode == 0, after.stdout


@pytest.mark.slow
def test_without_redis_url_it_names_the_embedded_store_it_would_use(
    tmp_path: Path, templates: Path
) -> None:
    in_memory = doctor(tmp_path, templates=templates, redis_url=None, PROOFROOM_REDIS_SERVER="off")
    private = doctor(tmp_path, templates=templates, redis_url=None)

    memory_lines = lines_of(in_memory)
    assert memory_lines["redis"][0].startswith("warn  redis     no REDIS_URL and no redis-server")
    assert "nothing (threads, votes, queued jobs) survives a restart" in memory_lines["redis"][0]
    assert "fix: install redis-server" in memory_lines["redis"][0]
    assert memory_lines["workers"] == [
        "ok    workers   no REDIS_URL: the chat process renders in a worker thread of its own"
    ]
    private_line = lines_of(private)["redis"][0]
    assert private_line.startswith(
        "ok    redis     no REDIS_URL: the chat processes start a private"
    )
    assert str(Path("data") / "redis") in private_line
    assert in_memory.returncode == private.returncode == 0


def test_a_redis_that_does_not_answer_fails_with_its_fix_and_no_traceback(
    tmp_path: Path, templates: Path
) -> None:
    url = f"redis://:secret-password@127.0.0.1:{free_port()}/3"
    done = doctor(tmp_path, templates=templates, redis_url=url)

    lines = lines_of(done)
    assert re.match(
        r"fail\s+redis\s+Redis at 127\.0\.0\.1:\d+/3 does not answer", lines["redis"][0]
    )
    assert "fix: start Redis (docker compose up -d redis) or correct REDIS_URL" in lines["redis"][0]
    assert "secret-password" not in done.stdout + done.stderr
    assert lines["workers"] == ["skip  workers   Redis does not answer, so no worker can be seen"]
    assert done.returncode == 1
