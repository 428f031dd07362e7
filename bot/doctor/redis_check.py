"""Redis: reachable, and how it persists. Without ``REDIS_URL``: which embedded store the chat
processes would use (a private ``redis-server`` under the data folder, or memory)."""

from __future__ import annotations

import redis as redis_lib

from bot.doctor.report import Check
from bot.doctor.state import RedisFacts, redis_facts
from engine.private_redis import PrivateRedisError, find_binary, socket_path_for
from engine.settings import Settings

AOF_FIX = (
    "turn on append-only persistence (`appendonly yes` in redis.conf, or "
    "`redis-cli CONFIG SET appendonly yes` and CONFIG REWRITE); docker/compose.yaml does"
)


def redis_check(settings: Settings) -> tuple[Check, redis_lib.Redis | None]:
    """The check, and a client on the server when one answers (for the worker checks)."""
    if not settings.redis_url:
        return embedded_check(settings)
    client = redis_lib.Redis.from_url(
        settings.redis_url, socket_connect_timeout=3, socket_timeout=5
    )
    where = _where(client)
    try:
        facts = redis_facts(client)
    except (redis_lib.RedisError, OSError) as exc:
        return (
            Check(
                "redis",
                "fail",
                f"Redis at {where} does not answer ({exc})",
                fix="start Redis (docker compose up -d redis) or correct REDIS_URL",
            ),
            None,
        )
    return persistence_check(facts, where=where), client


def embedded_check(settings: Settings) -> tuple[Check, redis_lib.Redis | None]:
    """No ``REDIS_URL``: the store ``proofroom slack``, ``discord`` and ``shell`` start."""
    folder = settings.data_dir / "redis"
    try:
        binary = find_binary(settings.redis_server)
        socket = socket_path_for(folder) if binary is not None else None
    except PrivateRedisError as exc:
        return Check("redis", "fail", str(exc)), None
    if binary is None:
        return (
            Check(
                "redis",
                "warn",
                "no REDIS_URL and no redis-server here: the chat processes keep their "
                "state in memory, and nothing (threads, votes, queued jobs) survives a restart",
                fix="install redis-server (apt-get install redis-server) or set REDIS_URL",
            ),
            None,
        )
    assert socket is not None  # there is a binary
    if socket.exists():  # a chat process runs now: look at its server
        client = redis_lib.Redis(unix_socket_path=str(socket), socket_timeout=5)
        try:
            facts = redis_facts(client)
        except (redis_lib.RedisError, OSError):
            pass  # a socket left by a crash: the next chat process clears it
        else:
            return persistence_check(facts, where=f"the private redis-server ({socket})"), client
    return (
        Check(
            "redis",
            "ok",
            f"no REDIS_URL: the chat processes start a private {binary} with append-only "
            f"persistence in {folder} (not running now)",
        ),
        None,
    )


def persistence_check(facts: RedisFacts, *, where: str) -> Check:
    """Whether what Redis holds survives its restart."""
    head = f"Redis {facts.version} at {where} answers"
    if not facts.last_write_ok:
        return Check(
            "redis",
            "fail",
            f"{head}, but its last save or append-only write failed",
            fix="check the disk of its data folder (full? permissions?) and its log",
        )
    if facts.aof:
        return Check("redis", "ok", f"{head}; append-only persistence on")
    if facts.save:
        return Check(
            "redis",
            "warn",
            f"{head}; snapshots only (save {facts.save}): a crash loses the jobs, threads "
            "and votes since the last snapshot",
            fix=AOF_FIX,
        )
    if facts.save is None:
        return Check(
            "redis",
            "warn",
            f"{head}; append-only persistence is off (snapshot rules not readable here)",
            fix=AOF_FIX,
        )
    return Check(
        "redis",
        "warn",
        f"{head} with no persistence: a restart loses every queued job, thread and vote",
        fix=AOF_FIX,
    )


def _where(client: redis_lib.Redis) -> str:
    """``host:port/db`` of ``client``, never its password."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
