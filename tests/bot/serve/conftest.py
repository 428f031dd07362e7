"""Fixtures of the HTTP service's tests: ``proofroom serve`` (or ``proofroom slack --http``) in a
process of its own, on the test's Redis and key prefix, with Slack's Web API pointed at the
recording fake (``tests/bot/adapters/slack/fake_slack.py``); and plain HTTP helpers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.settings import Settings
from tests.bot.adapters.slack.conftest import SIGNING_SECRET, fake_slack  # noqa: F401
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.engine.jobs_fixtures import process_env
from tests.waiting import wait_for

SERVING = re.compile(r"serving on (http://\S+) ")


@dataclass
class Answer:
    """An HTTP answer: status and body."""

    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def get(url: str, *, timeout: float = 10) -> Answer:
    """GET ``url``; an error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return Answer(response.status, response.read().decode())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}, read by prometheus_client's
    own parser (so the text is valid exposition format)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class ServeProcess:
    """``python -m bot.cli <argv>`` with the test's settings; its log in ``log_path``."""

    def __init__(
        self, argv: list[str], *, settings: Settings, fake: FakeSlack | None, workdir: Path
    ) -> None:
        self.log_path = workdir / f"serve-{len(list(workdir.glob('serve-*.log')))}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        env |= process_env(settings)
        if fake is not None:
            env |= {
                "SLACK_BOT_TOKEN": fake.bot_token,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "PROOFROOM_SLACK_API_URL": fake.api_url,
            }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *argv],
            cwd=workdir,  # no .env of the checkout
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = wait_for(self._serving, timeout=60, what="proofroom serve to listen")

    def _serving(self) -> str | None:
        found = SERVING.search(self.log())
        if found is None and self.proc.poll() is not None:
            raise AssertionError(f"exited with {self.proc.returncode}:\n{self.log()}")
        return found.group(1) if found else None

    def log(self) -> str:
        """What the process logged so far."""
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as Docker stops a container; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture()
def run_serve(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start ``proofroom <argv>`` (default ``serve`` on a free port of 127.0.0.1); with
    ``fake=``, Slack HTTP mode against that fake. Killed afterwards if still running."""
    started: list[ServeProcess] = []

    def run(*argv: str, fake: FakeSlack | None = None) -> ServeProcess:
        command = list(argv) or ["serve", "--host", "127.0.0.1", "--port", "0"]
        process = ServeProcess(command, settings=settings, fake=fake, workdir=tmp_path)
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()
