"""``proofroom slack`` that cannot start says why in one line (exit status 2), never with a
traceback: the Slack API out of reach, or a token Slack refuses. Run as a subprocess, as
an operator runs it, against the fake Web API (``PROOFROOM_SLACK_API_URL``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import Settings
from tests.bot.adapters.slack.fake_slack import FakeSlack

ROOT = Path(__file__).resolve().parents[4]


def closed_port_url() -> str:
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/"


def proofroom_slack(
    *argv: str, api_url: str, tmp_path: Path, redis_url: str, settings: Settings, **tokens: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PROOFROOM_"))}
    env |= {
        "PROOFROOM_SLACK_API_URL": api_url,
        # A Redis of its own keys, so that no embedded worker starts if the check were passed.
        "REDIS_URL": redis_url,
        "PROOFROOM_KEY_PREFIX": settings.key_prefix,
        "PROOFROOM_CALENDARS_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        **tokens,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "slack", *argv],
        env=env,
        cwd=tmp_path,  # no .env
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_an_unreachable_api_is_one_line_naming_the_url(
    tmp_path: Path, redis_url: str, settings: Settings
) -> None:
    url = closed_port_url()
    done = proofroom_slack(
        api_url=url,
        tmp_path=tmp_path,
        redis_url=redis_url,
        settings=settings,
        SLACK_BOT_TOKEN="xoxb-any",
        SLACK_APP_TOKEN="xapp-any",
    )
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert f"cannot reach the Slack API at {url}" in line and "PROOFROOM_SLACK_API_URL" in line


@pytest.mark.parametrize(
    ("argv", "tokens", "named"),
    [
        (
            (),
            {"SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_APP_TOKEN": "xapp-test-token"},
            "SLACK_BOT_TOKEN",
        ),
        (
            ("--http",),
            {"SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_SIGNING_SECRET": "s"},
            "SLACK_BOT_TOKEN",
        ),
        (
            (),
            {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_APP_TOKEN": "xapp-wrong"},
            "SLACK_APP_TOKEN",
        ),
    ],
)
def test_a_refused_token_is_one_line_naming_its_variable(
    fake_slack: FakeSlack,
    tmp_path: Path,
    redis_url: str,
    settings: Settings,
    argv: tuple[str, ...],
    tokens: dict[str, str],
    named: str,
) -> None:
    done = proofroom_slack(
        *argv,
        api_url=fake_slack.api_url,
        tmp_path=tmp_path,
        redis_url=redis_url,
        settings=settings,
        **tokens,
    )
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert f"Slack refused {named}" in line and "invalid_auth" in line
    assert "wrong" not in line  # the token itself is never shown
    assert not fake_slack.calls_to("chat.postMessage")
