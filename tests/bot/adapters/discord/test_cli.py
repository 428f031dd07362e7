"""``proofroom discord`` and ``proofroom discord invite-url``; the Discord settings."""

from __future__ import annotations

import logging
import socket
from urllib.parse import parse_qs, urlparse

import discord
import discord.http
import pytest

from bot.adapters.discord.cli import build_bot, invite_url, permissions
from bot.adapters.discord.settings import DiscordSettings
from bot.cli import main
from bot.service import BotService
from bot.settings import BotSettings

# View Channel, Send Messages, Create Public Threads, Send Messages in Threads, Attach Files.
CORE = (1 << 10) | (1 << 11) | (1 << 35) | (1 << 38) | (1 << 15)
# Add Reactions and Read Message History: only to put the vote reactions under images.
REACTIONS = (1 << 6) | (1 << 16)


def _query(url: str) -> dict[str, list[str]]:
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc, parsed.path) == (
        "https",
        "discord.com",
        "/oauth2/authorize",
    )
    return parse_qs(parsed.query)


def test_invite_url_has_both_scopes_and_exactly_the_permissions(capsys, monkeypatch):
    monkeypatch.delenv("DISCORD_APPLICATION_ID", raising=False)
    assert main(["discord", "invite-url", "--application-id", "123456789012345678"]) == 0
    query = _query(capsys.readouterr().out.strip())
    assert query["client_id"] == ["123456789012345678"]
    assert query["scope"] == ["bot applications.commands"]
    assert int(query["permissions"][0]) == CORE | REACTIONS
    perms = discord.Permissions(int(query["permissions"][0]))
    assert not (
        perms.manage_threads
        or perms.embed_links
        or perms.mention_everyone
        or perms.manage_messages
        or perms.administrator
    )


def test_without_reaction_seeding_two_permissions_go(capsys, monkeypatch):
    monkeypatch.setenv("DISCORD_APPLICATION_ID", "42")
    assert main(["discord", "invite-url", "--no-reactions"]) == 0
    query = _query(capsys.readouterr().out.strip())
    assert query["client_id"] == ["42"]
    assert int(query["permissions"][0]) == CORE
    assert permissions(seed_reactions=False).value == CORE
    assert "permissions=" in invite_url(application_id=1)


def test_invite_url_needs_the_application_id(capsys, monkeypatch):
    monkeypatch.delenv("DISCORD_APPLICATION_ID", raising=False)
    monkeypatch.setenv("PROOFROOM_DISCORD_APPLICATION_ID", "")
    monkeypatch.chdir("/")  # no .env
    assert main(["discord", "invite-url"]) == 2
    assert "DISCORD_APPLICATION_ID" in capsys.readouterr().err


def test_running_without_a_token_names_the_variable(caplog, monkeypatch):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.chdir("/")
    assert main(["discord"]) == 2
    assert "DISCORD_TOKEN is not set" in caplog.text


def test_settings_from_the_environment_keep_the_token_secret(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.secret.token")
    monkeypatch.setenv("PROOFROOM_DISCORD_GUILD_IDS", "111, 222")
    monkeypatch.setenv("PROOFROOM_DISCORD_APPROVER_ROLES", "art-director,1500000000000000001")
    monkeypatch.setenv("PROOFROOM_DISCORD_MAX_ATTACHMENT_BYTES", "1048576")
    settings = DiscordSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.guild_ids == [111, 222]
    assert settings.approver_roles == ["art-director", "1500000000000000001"]
    assert settings.max_attachment_bytes == 1048576
    assert settings.secret_token() == "MTIz.secret.token"
    assert "secret" not in repr(settings) and "secret" not in str(settings.model_dump())


def test_a_bad_archive_duration_is_refused():
    with pytest.raises(ValueError, match="thread_archive_minutes"):
        DiscordSettings(_env_file=None, thread_archive_minutes=30)  # type: ignore[call-arg]


def test_build_bot_binds_the_service_and_merges_approver_roles(settings, redis):
    client = build_bot(
        settings=settings,
        discord_settings=DiscordSettings(_env_file=None, approver_roles=["art-director"]),  # type: ignore[call-arg]
        bot_settings=BotSettings(_env_file=None, approver_roles=frozenset({"U1"})),  # type: ignore[call-arg]
        redis=redis,
    )
    assert isinstance(client.service, BotService)
    assert client.service.adapter is client.adapter
    assert client.service.review.policy.approver_roles == {"U1", "art-director"}
    assert not client.intents.message_content and client.intents.reactions


@pytest.fixture()
def cli_env(monkeypatch, tmp_path, redis_url, settings):
    """``proofroom discord`` on the test's Redis keys (no embedded worker), without a .env."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PROOFROOM_KEY_PREFIX", settings.key_prefix)


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_refused_token_is_one_line_naming_the_variable(
    caplog, monkeypatch, cli_env, fake_discord
):
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.wrong.token")
    with caplog.at_level(logging.ERROR):
        assert main(["discord"]) == 2  # no LoginFailure traceback
    [error] = _errors(caplog)
    assert "Discord refused DISCORD_TOKEN" in error and "wrong" not in error
    assert [c.status for c in fake_discord.calls_to("GET", "/users/@me")] == [401]


def test_an_unreachable_discord_is_one_line(caplog, monkeypatch, cli_env):
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.some.token")
    with caplog.at_level(logging.ERROR):
        assert main(["discord"]) == 2
    [error] = _errors(caplog)
    assert error.startswith("cannot reach Discord (") and str(port) in error
