"""The doctor's checks one by one, in this process, against real servers: throwaway
``redis-server`` processes with and without persistence, and the recording fakes of the
Slack and Discord APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from bot.doctor.chat import discord_check, slack_check
from bot.doctor.redis_check import persistence_check
from bot.doctor.report import Check, exit_code, summary
from bot.doctor.state import redis_facts
from tests.bot.adapters.discord.fake_discord import FakeDiscord
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.redis_server import RedisServer


@pytest.fixture()
def no_chat_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings from this test's variables only (no .env, no tokens of the developer)."""
    monkeypatch.chdir(tmp_path)
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DISCORD_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture()
def fake_discord() -> Iterator[FakeDiscord]:
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("persistent", [True, False])
def test_persistence_is_read_from_the_server(tmp_path: Path, persistent: bool) -> None:
    server = RedisServer(workdir=tmp_path, persistent=persistent).start()
    try:
        client = redis_lib.Redis.from_url(server.url)
        check = persistence_check(redis_facts(client), where="here")
        client.close()
    finally:
        server.stop()

    if persistent:
        assert check.status == "ok" and check.detail.endswith("append-only persistence on")
    else:
        assert check.status == "warn"
        assert "no persistence: a restart loses every queued job, thread and vote" in check.detail
        assert "appendonly yes" in check.fix


def test_slack_tokens_accepted_and_refused(
    no_chat_env: None, monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack
) -> None:
    assert slack_check().status == "skip"
    monkeypatch.setenv("SLACK_BOT_TOKEN", fake_slack.bot_token)
    monkeypatch.setenv("PROOFROOM_SLACK_API_URL", fake_slack.api_url)
    half = slack_check()
    assert half.status == "fail" and "neither SLACK_APP_TOKEN" in half.detail

    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cret")
    assert slack_check() == Check(
        "slack", "ok", "Slack accepts SLACK_BOT_TOKEN; HTTP mode (SLACK_SIGNING_SECRET)"
    )
    assert fake_slack.calls_to("auth.test")

    fake_slack.fail("auth.test", "invalid_auth")
    refused = slack_check()
    assert refused.status == "fail"
    assert "Slack refused SLACK_BOT_TOKEN (xoxb-...): invalid_auth" in refused.detail


def test_discord_token_accepted_refused_and_unreachable(
    no_chat_env: None, monkeypatch: pytest.MonkeyPatch, fake_discord: FakeDiscord
) -> None:
    assert discord_check().status == "skip"
    monkeypatch.setenv("DISCORD_TOKEN", fake_discord.token)
    monkeypatch.setenv("PROOFROOM_DISCORD_API_URL", fake_discord.api_base)
    assert discord_check() == Check(
        "discord", "ok", "Discord accepts DISCORD_TOKEN (bot user proofroom)"
    )

    fake_discord.fail("GET", "/users/@me", status=401, body={"message": "401: Unauthorized"})
    refused = discord_check()
    assert refused.status == "fail" and refused.detail == "Discord refused DISCORD_TOKEN (401)"

    fake_discord.stop()
    gone = discord_check()
    assert gone.status == "fail" and gone.detail.startswith("cannot reach Discord at http")


def test_summary_and_exit_code_count_failures_not_warnings() -> None:
    checks = [
        Check("a", "ok", "fine"),
        Check("b", "warn", "hmm", fix="look"),
        Check("c", "skip", "-"),
    ]
    assert exit_code(checks) == 0
    assert summary(checks) == "0 failed, 1 to look at, of 3 checks"
    failing = [*checks, Check("d", "fail", "broken\n  badly", fix="mend it")]
    assert exit_code(failing) == 1
    assert failing[-1].line() == "fail  d         broken badly; fix: mend it"
    assert summary([Check("a", "ok", "fine")]) == "all 1 checks passed"
