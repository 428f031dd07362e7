"""``proofroom discord`` without ``REDIS_URL``: its state in the data folder's private
``redis-server``, which the worker thread shares and which stops when the bot does."""

from __future__ import annotations

import logging
import re

import pytest

from bot.cli import main
from engine.private_redis import _alive, find_binary
from engine.settings import REPO_ROOT, get_settings

pytestmark = [
    pytest.mark.slow,  # the worker thread loads the tiny model
    pytest.mark.skipif(find_binary("redis-server") is None, reason="no redis-server"),
]


@pytest.fixture()
def no_redis_url(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("REDIS_URL", "PROOFROOM_REDIS_URL", "PROOFROOM_REDIS_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROOFROOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PROOFROOM_MODEL_CACHE_DIR", str(REPO_ROOT / ".proofroom" / "models"))
    monkeypatch.setenv("PROOFROOM_TEMPLATES_DIR", str(REPO_ROOT / "templates"))
    monkeypatch.setenv("PROOFROOM_DEVICE", "cpu")
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_the_bot_keeps_its_state_in_a_private_server_it_stops_on_exit(
    caplog, monkeypatch, no_redis_url, fake_discord
):
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.wrong.token")
    with caplog.at_level(logging.INFO):
        assert main(["discord"]) == 2  # Discord refuses the token: the bot stops

    kept = re.search(r"state kept in (\S+) by a private redis-server, pid (\d+)", caplog.text)
    assert kept, caplog.text
    assert kept[1] == str(no_redis_url / "redis")
    assert "embedded worker" in caplog.text, "the worker thread ran on it"
    assert not _alive(int(kept[2])), "stopped with the bot"
    assert (no_redis_url / "redis" / "appendonlydir").is_dir()
    assert "Discord refused DISCORD_TOKEN" in caplog.text
