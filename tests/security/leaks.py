"""What the secrets test needs: known secret values, a Redis ACL user whose password is one of
them, ``proofroom`` processes run with them, and a collector of everything those processes
and the fakes around them showed, searched for each secret at the end."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis as redis_lib

from engine.settings import REPO_ROOT


def known(label: str) -> str:
    """A secret value of this run: recognisable in a failure message, never guessable."""
    return f"{label}{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Secrets:
    """Every secret a deployment holds, as this test sets them."""

    slack_bot_token: str = field(default_factory=lambda: known("xoxb-SECRETbot"))
    slack_app_token: str = field(default_factory=lambda: known("xapp-SECRETapp"))
    slack_signing_secret: str = field(default_factory=lambda: known("SECRETsigning"))
    discord_token: str = field(default_factory=lambda: known("SECRETdiscord"))
    redis_password: str = field(default_factory=lambda: known("SECRETredis"))
    wrong_redis_password: str = field(default_factory=lambda: known("SECRETwrongredis"))
    aws_secret_access_key: str = field(default_factory=lambda: known("SECRETaws"))
    webhook_secret: str = field(default_factory=lambda: known("SECRETwebhook"))
    webhook_url_token: str = field(default_factory=lambda: known("SECRETwebhookurl"))

    def values(self) -> dict[str, str]:
        """Name -> value of each secret."""
        return dict(vars(self))


@contextmanager
def redis_user(client: redis_lib.Redis, *, url: str, password: str, name: str) -> Iterator[str]:
    """A Redis ACL user ``name`` with ``password`` on the test server (created here, deleted
    afterwards): the URL that logs in as it. The shared server has no password of its own,
    and Redis refuses AUTH with one when none is configured."""
    client.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all")
    try:
        yield with_login(url, user=name, password=password)
    finally:
        client.execute_command("ACL", "DELUSER", name)


def with_login(url: str, *, user: str, password: str) -> str:
    """``url`` (``redis://host:port/db``) logging in as ``user`` with ``password``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{user}:{password}@{parts.hostname}:{parts.port or 6379}{parts.path}"


def clean_environment() -> dict[str, str]:
    """This process's environment without any chat token, Redis URL or AWS credential of
    the machine, so that only the test's values are in play."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "DISCORD_", "REDIS_URL", "AWS_"))
    }


@dataclass
class Captured:
    """Texts shown by the system under test, by where they were seen."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: object) -> None:
        self.texts.append((where, str(text)))

    def leaks(self, values: dict[str, str]) -> list[str]:
        """``secret in where`` for every secret value found in a captured text."""
        return [
            f"{name} in {where}"
            for name, value in values.items()
            for where, text in self.texts
            if value in text
        ]


class Proofroom:
    """``python -m bot.cli <args>`` in a process of its own with ``env``, its output (stdout
    and stderr together) written to ``log``."""

    def __init__(self, *args: str, env: dict[str, str], log: Path, cwd: Path) -> None:
        self.args = args
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            cwd=cwd,  # no .env of the repository
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 120) -> int:
        """The exit status, once the process has ended."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.flush()

    def stop(self) -> int:
        """SIGTERM (a clean stop), then SIGKILL after 20 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return int(self.proc.returncode)

    @property
    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")


def run_proofroom(*args: str, env: dict[str, str], log: Path, cwd: Path) -> tuple[int, str]:
    """Run a ``proofroom`` command to its end: exit status and output."""
    process = Proofroom(*args, env=env, log=log, cwd=cwd)
    status = process.wait()
    process.stop()
    return status, process.output
