"""The data folder's own ``redis-server`` (``engine.private_redis``) and the chat processes'
choice of store (``engine.embedded.open_chat_redis``), on real ``redis-server`` processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest

from engine.embedded import open_chat_redis, redis_for
from engine.private_redis import (
    USERS_KEY,
    PrivateRedis,
    PrivateRedisError,
    _alive,
    find_binary,
    socket_path_for,
)
from engine.settings import REPO_ROOT, Settings
from tests.waiting import wait_for

BINARY = find_binary("redis-server")
pytestmark = pytest.mark.skipif(BINARY is None, reason="redis-server is not installed")


@pytest.fixture()
def folder(tmp_path: Path) -> Iterator[Path]:
    """A data folder's ``redis`` folder; whatever server a test leaves there is killed."""
    path = tmp_path / "data" / "redis"
    yield path
    pidfile = path / "redis-server.pid"
    if pidfile.exists() and (pid := int(pidfile.read_text())) and _alive(pid):
        os.kill(pid, signal.SIGKILL)


def server(folder: Path, **kwargs: float) -> PrivateRedis:
    assert BINARY is not None
    return PrivateRedis(binary=BINARY, folder=folder, **kwargs)


def gone(pid: int | None) -> bool:
    return pid is not None and not _alive(pid)


def test_the_state_survives_a_stop_and_a_new_start(folder: Path) -> None:
    first = server(folder)
    client = first.open()
    client.set("thread", "s1")
    pid = first.pid

    assert first.started and pid is not None
    assert first.socket_path == folder.resolve() / "redis.sock"
    assert oct(first.socket_path.stat().st_mode & 0o777) == "0o700"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert client.config_get("port") == {"port": "0"}, "no TCP port"
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    first.close()

    assert gone(pid), "the server stops with its only user"
    assert not first.socket_path.exists() and not first.pidfile.exists()
    assert (folder / "appendonlydir").is_dir()

    again = server(folder)
    assert again.open().get("thread") == b"s1"
    assert again.started and again.pid != pid
    again.close()
    again.close()  # twice is fine


def test_a_second_process_shares_the_server_and_the_last_one_out_stops_it(
    folder: Path,
) -> None:
    owner, guest = server(folder), server(folder)
    owner.open().set("vote", "approve")
    assert guest.open().get("vote") == b"approve"
    assert not guest.started and guest.pid == owner.pid

    owner.close()  # the guest still uses it
    assert guest.client is not None and guest.client.ping()
    assert _alive(guest.pid or 0)

    guest.close()
    assert gone(guest.pid)


def crashed_chat(folder: Path, *, key: str, value: str) -> int:
    """A chat process that opens the folder's server, writes ``key``, and is killed (-9: no
    close, no atexit); returns the server's pid."""
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from engine.private_redis import PrivateRedis
        server = PrivateRedis(binary={BINARY!r}, folder=Path({str(folder)!r}))
        server.open().set({key!r}, {value!r})
        print(server.pid, flush=True)
        time.sleep(600)
        """
    )
    chat = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert chat.stdout is not None
        return int(chat.stdout.readline())
    finally:
        chat.kill()
        chat.wait()


def test_a_user_killed_without_leaving_does_not_keep_the_server_alive(folder: Path) -> None:
    pid = crashed_chat(folder, key="ledger", value="1")

    assert _alive(pid), "the server outlives a crashed chat process (its own session)"
    after = server(folder)
    assert after.open().get("ledger") == b"1"
    assert not after.started and after.pid == pid
    after.close()
    assert gone(pid), "the dead user was pruned, so the last live one stopped it"


def test_after_a_crash_of_both_a_new_server_starts_on_the_same_file(folder: Path) -> None:
    pid = crashed_chat(folder, key="bot:img:1", value="pending")
    os.kill(pid, signal.SIGKILL)  # the server too (a power cut, the OOM killer)
    wait_for(lambda: gone(pid), what="the killed server to end")
    assert socket_path_for(folder).exists(), "a stale socket is left"
    assert (folder / "redis-server.pid").read_text().strip() == str(pid), "and a stale pid file"

    second = server(folder)
    client = second.open()

    assert second.started and second.pid != pid
    assert client.get("bot:img:1") == b"pending", "acknowledged writes survive"
    second.close()
    assert gone(second.pid)


def test_a_live_server_that_does_not_answer_is_never_doubled(folder: Path) -> None:
    first = server(folder)
    first.open()
    pid = first.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # alive, holding the file, answering nothing
    try:
        with pytest.raises(PrivateRedisError) as raised:
            server(folder, start_timeout_s=1).open()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert f"a redis-server (pid {pid}) holds {folder.resolve()} but does not answer" in str(
        raised.value
    )
    assert f"kill {pid}" in str(raised.value)
    first.close()
    assert gone(pid)


def test_a_server_that_cannot_start_says_why_with_the_end_of_its_log(
    folder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "redis-server"
    broken.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR (Redis 7.0.15)'\nexit 1\n")
    broken.chmod(0o755)

    with pytest.raises(PrivateRedisError) as raised:
        PrivateRedis(binary=str(broken), folder=folder).open()

    message = str(raised.value)
    assert message.startswith(f"the private redis-server for {folder.resolve()} exited")
    assert "FATAL CONFIG FILE ERROR" in message
    assert "PROOFROOM_REDIS_SERVER=off" in message


def test_a_data_folder_it_cannot_use_is_a_sentence(folder: Path) -> None:
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder")

    with pytest.raises(PrivateRedisError) as raised:
        server(folder).open()

    assert str(raised.value).startswith(
        f"cannot use {folder.resolve()} for the private redis-server (File exists); "
    )
    assert "PROOFROOM_DATA_DIR" in str(raised.value)


def test_a_data_folder_too_deep_for_a_socket_gets_one_in_a_private_temp_folder(
    tmp_path: Path,
) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5, "redis")
    assert len(os.fsencode(deep / "redis.sock")) > 108

    path = socket_path_for(deep)

    assert len(os.fsencode(path)) <= 100
    assert path == socket_path_for(deep), "every process finds the same socket"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    running = server(deep)
    try:
        assert running.open().ping() and running.socket_path == path
    finally:
        running.close()
        path.parent.rmdir()


def test_which_binary_the_setting_names(tmp_path: Path) -> None:
    assert find_binary("off") is None and find_binary("") is None and find_binary("OFF") is None
    assert find_binary("no-such-redis-server-here") is None, "a name not on PATH: memory"
    assert find_binary("redis-server") == BINARY
    with pytest.raises(PrivateRedisError, match="is not an executable redis-server"):
        find_binary(str(tmp_path / "bin" / "redis-server"))


# -- the chat processes' store -------------------------------------------------------------


def chat_settings(tmp_path: Path, **fields: str) -> Settings:
    return Settings(_env_file=None, redis_url=None, data_dir=tmp_path / "data", **fields)  # type: ignore[call-arg]


def test_without_redis_url_the_chat_store_is_the_data_folders_server(
    tmp_path: Path, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engine.embedded")
    with open_chat_redis(chat_settings(tmp_path)) as store:
        store.client.set("k", "v")
        assert store.durable and store.server is not None
        pid = store.server.pid
        assert store.where == f"{tmp_path / 'data' / 'redis'} by a private redis-server, pid {pid}"
    assert gone(pid)
    assert f"state kept in {store.where}" in caplog.text
    with open_chat_redis(chat_settings(tmp_path)) as store:
        assert store.client.get("k") == b"v"
        assert store.client.hlen(USERS_KEY) == 1


@pytest.mark.parametrize("setting", ["off", "no-such-redis-server-here"])
def test_without_a_server_the_chat_store_is_memory_with_a_one_line_warning(
    tmp_path: Path, setting: str, caplog: pytest.LogCaptureFixture
) -> None:
    with open_chat_redis(chat_settings(tmp_path, redis_server=setting)) as store:
        assert isinstance(store.client, fakeredis.FakeRedis) and not store.durable
        assert store.client is redis_for(chat_settings(tmp_path))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "state kept in memory, nothing (threads, votes, queued jobs) survives a restart" in (
        warnings[0].getMessage()
    )
    assert not (tmp_path / "data").exists(), "no server, no folder"


def test_with_redis_url_the_chat_store_is_that_redis(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(_env_file=None, redis_url=redis_url, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    with open_chat_redis(settings) as store:
        assert store.durable and store.server is None and store.client.ping()
    assert not (tmp_path / "data").exists()
