"""What the doctor asks Redis: whether it answers, its version, and how it persists."""

from __future__ import annotations

from dataclasses import dataclass

import redis as redis_lib

from engine.redis_values import as_text


@dataclass(frozen=True)
class RedisFacts:
    """A Redis server as the doctor sees it."""

    version: str
    aof: bool  # append-only file on: every write survives a restart
    save: str | None  # RDB snapshot rule ("3600 1 300 100"); None: CONFIG is not allowed
    last_write_ok: bool  # the last AOF write and RDB save succeeded (disk full, permissions)


def redis_facts(client: redis_lib.Redis) -> RedisFacts:
    """Ask ``client``'s server; raises redis' ``ConnectionError`` when it does not answer."""
    client.ping()
    server = client.info("server")
    persistence = client.info("persistence")
    try:
        save = as_text(client.config_get("save").get("save") or "")
    except redis_lib.ResponseError:  # managed Redis (ElastiCache, Memorystore) refuses CONFIG
        save = None
    ok = (
        persistence.get("rdb_last_bgsave_status", "ok") == "ok"
        and persistence.get("aof_last_write_status", "ok") == "ok"
    )
    return RedisFacts(
        version=str(server.get("redis_version", "?")),
        aof=bool(int(persistence.get("aof_enabled", 0))),
        save=save,
        last_write_ok=ok,
    )
