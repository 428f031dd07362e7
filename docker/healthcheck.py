"""Health checks of Proofroom's containers (the images' HEALTHCHECK and docker/compose.yaml).

    python healthcheck.py worker [--name NAME]
    python healthcheck.py bot {slack,discord} [--max-idle SECONDS]
    python healthcheck.py http [URL]

``worker``: healthy while a worker of this container keeps its alive key fresh
(``{prefix}:alive:{name}``, ``engine.recovery``; TTL 15 s). The heartbeat starts before the
default model is preloaded, so a long first download does not read as a failure, and a worker
that hangs or has lost Redis turns unhealthy within the key's TTL. Without ``--name`` any
worker named as ``proofroom worker`` names itself on this host (the container's hostname)
counts.

``bot``: healthy while the bot's event pump keeps reading the job-event stream: its consumer
in the platform's group was active within ``--max-idle`` seconds (``XINFO CONSUMERS``). The
pump reads every second when idle; delivering a large burst of results can keep it away
longer, hence the generous default. Redis counts a read that waited for nothing as activity
only from 7.2 on (the compose file runs 7.4); with an older Redis the check can only see that
the consumer exists. The chat connection itself is not checked: the SDKs reconnect on their
own and say so in the logs.

``http``: healthy while ``URL`` answers 200 (default ``http://127.0.0.1:3000/healthz``, the
liveness of ``proofroom serve``). Not ``/readyz``: a service with no worker yet still
acknowledges Slack and queues jobs, and must not be restarted for it.

Exit status 0 when healthy, 1 when not, with one line saying why (``docker inspect`` shows
it). Only Redis and the project's settings are read: neither torch nor a chat SDK is imported,
so a check every 30 s costs a fraction of a second.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.error
import urllib.request

import redis as redis_lib

from bot.settings import BotSettings
from engine.events import EventStream
from engine.recovery import alive_key
from engine.settings import Settings
from engine.worker import worker_name

PLATFORMS = ("slack", "discord")
# How long the bot's pump may go without reading before the bot counts as unhealthy.
DEFAULT_MAX_IDLE_S = 300.0
# What `proofroom serve` answers while it runs (its default port).
DEFAULT_HTTP_URL = "http://127.0.0.1:3000/healthz"
# A check must answer well within Docker's healthcheck timeout, also when Redis is away.
REDIS_TIMEOUT_S = 3.0
# What worker_name() puts after the host: the process id and six random hex digits.
WORKER_SUFFIX = re.compile(r"\d+-[0-9a-f]{6}")


class Unhealthy(Exception):
    """Why the container is not healthy, as one line."""


def check_worker(redis: redis_lib.Redis, settings: Settings, *, name: str | None) -> str:
    """The name of a live worker of this container (``name``, or any worker named after
    this host); raises :class:`Unhealthy` when there is none."""
    if name is not None:
        if redis.exists(alive_key(settings, name)):
            return name
        raise Unhealthy(f"worker {name} has no fresh heartbeat in Redis")
    # worker_name() is "<prefix>-<host>-<pid>-<random>": everything up to the pid is this
    # host's, whatever process the worker runs as. The rest is checked here, since a glob
    # cannot tell this host from one whose name merely starts with it ("gpu" and "gpu-2").
    host_part = worker_name(settings).rsplit("-", 2)[0] + "-"
    pattern = _glob_escape(alive_key(settings, host_part)) + "*"
    for key in redis.scan_iter(match=pattern, count=1000):
        name = _text(key)[len(alive_key(settings, "")) :]
        if WORKER_SUFFIX.fullmatch(name[len(host_part) :]):
            return name
    raise Unhealthy(f"no worker on this host ({host_part}*) has a fresh heartbeat in Redis")


def check_bot(
    redis: redis_lib.Redis,
    settings: Settings,
    bot_settings: BotSettings,
    *,
    platform: str,
    max_idle_s: float,
) -> float | None:
    """Seconds since the ``platform`` bot's event pump last read the job-event stream (None
    on a Redis older than 7.2, which does not count reads that found nothing); raises
    :class:`Unhealthy` when it never did or not within ``max_idle_s``."""
    # The names BotService reads with (bot/service.py): one group per platform.
    group = f"{bot_settings.event_group}-{platform}"
    consumer = bot_settings.event_consumer
    stream = EventStream(redis=redis, settings=settings).key
    try:
        consumers = redis.xinfo_consumers(stream, group)
    except redis_lib.ResponseError as exc:  # no stream or no group: the bot never started
        raise Unhealthy(f"no {platform} bot has read {stream} yet ({exc})") from exc
    for entry in consumers:
        if _text(entry["name"]) == consumer:
            if "inactive" not in entry:  # Redis < 7.2: "idle" is since the last delivery
                return None
            idle_s = int(entry["idle"]) / 1000
            if idle_s > max_idle_s:
                raise Unhealthy(
                    f"the {platform} bot's event pump last read {idle_s:.0f} s ago "
                    f"(more than {max_idle_s:.0f} s)"
                )
            return idle_s
    raise Unhealthy(f"no consumer {consumer!r} in group {group!r} on {stream}")


def check_http(url: str) -> int:
    """The status ``url`` answered with; raises :class:`Unhealthy` for another than 200 or
    no answer within ``REDIS_TIMEOUT_S``."""
    try:
        with urllib.request.urlopen(url, timeout=REDIS_TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"{url} answered {exc.code}") from exc
    except OSError as exc:  # refused, reset, timed out
        raise Unhealthy(f"{url} does not answer ({getattr(exc, 'reason', exc)})") from exc


def main(argv: list[str] | None = None) -> int:
    """Run one check; 0 when healthy, 1 when not."""
    args = parser().parse_args(argv)
    if args.role == "http":  # the service's own answer: no Redis read here
        try:
            status = check_http(args.url)
        except Unhealthy as exc:
            print(f"unhealthy: {exc}", file=sys.stderr)
            return 1
        print(f"healthy: {args.url} answered {status}")
        return 0
    settings = Settings()
    if not settings.redis_url:
        print("unhealthy: REDIS_URL is not set", file=sys.stderr)
        return 1
    redis = redis_lib.Redis.from_url(
        settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
    )
    try:
        if args.role == "worker":
            found = check_worker(redis, settings, name=args.name)
            print(f"healthy: worker {found} is alive")
        else:
            idle_s = check_bot(
                redis,
                settings,
                BotSettings(),
                platform=args.platform,
                max_idle_s=args.max_idle,
            )
            when = "(Redis < 7.2: idle time unknown)" if idle_s is None else f"{idle_s:.1f} s ago"
            print(f"healthy: {args.platform} bot read job events {when}")
        return 0
    except Unhealthy as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    except redis_lib.RedisError as exc:
        print(f"unhealthy: Redis at {settings.redis_url} does not answer ({exc})", file=sys.stderr)
        return 1
    finally:
        redis.close()


def parser() -> argparse.ArgumentParser:
    """The command line (also read by tests/docker to check the compose file's checks)."""
    parser = argparse.ArgumentParser(prog="healthcheck.py", description=__doc__.split("\n")[0])
    roles = parser.add_subparsers(dest="role", required=True)
    worker = roles.add_parser("worker", help="a `proofroom worker` container")
    worker.add_argument("--name", help="the worker's --name, if it was given one")
    bot = roles.add_parser("bot", help="a `proofroom slack` or `proofroom discord` container")
    bot.add_argument("platform", choices=PLATFORMS)
    bot.add_argument(
        "--max-idle",
        type=float,
        default=DEFAULT_MAX_IDLE_S,
        help="seconds the event pump may go without reading (default %(default)s)",
    )
    http = roles.add_parser("http", help="a `proofroom serve` container: GET its /healthz")
    http.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_HTTP_URL,
        help="what must answer 200 (default %(default)s)",
    )
    return parser


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern (a key prefix may hold ``*`` or ``[``)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


if __name__ == "__main__":
    sys.exit(main())
