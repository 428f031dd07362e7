"""How long the bot takes to answer ``/imagine``, with no worker: our own time per command.

    python bench/commands.py                    # 30 rounds on REDIS_URL or 127.0.0.1:6379
    python bench/commands.py --repeats 200 --redis-url redis://host:6379/0

``measure(quick=..., redis_url=...)`` returns the same figures as a dict (``bench/run.py``).

The real service (``bot.testing.chat.FakeChat`` with ``worker=False``: the real grammar,
catalog, state, queue and event stream on a real Redis, a fake chat platform) answers a few
command shapes, interleaved in each round so that a busy machine slows all of them alike:

- plain: a prompt alone, queued;
- template: a template with a LoRA and ``--ar``, queued;
- meta: ``status`` from a user with 3 queued jobs (the others' jobs pile up over the rounds,
  as none runs; this user's list stays the same length);
- refusal: an unknown flag, answered without queueing.

Each answer is checked to be the expected kind before it counts. Prints the median and the
90th percentile of each shape over ``--repeats`` rounds (after one untimed round), next to the
3 s within which Slack and Discord want an answer. Everything runs under a key prefix of its
own, deleted at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis as redis_lib  # noqa: E402

from bench.common import add_redis_url  # noqa: E402
from bot.settings import BotSettings  # noqa: E402
from bot.testing.chat import FakeChat  # noqa: E402
from tests.engine.jobs_fixtures import isolated_settings, new_prefix, wipe  # noqa: E402

PLATFORM_LIMIT_S = 3.0  # Slack acknowledges, Discord defers, within 3 s or the user sees a failure

STATUS_USER = "U2"  # queues STATUS_JOBS jobs before the rounds, then only asks for status
STATUS_JOBS = 3

# name -> (command, user, how its answer starts)
SHAPES: dict[str, tuple[str, str, str]] = {
    "plain": ("/imagine a lighthouse at dusk, oil painting", "U1", "Queued job"),
    "template": (
        "/imagine product-photo product=mug --lora tiny-style:0.5 --ar 3:2",
        "U1",
        "Queued job",
    ),
    "meta": ("/imagine status", STATUS_USER, "Your jobs:"),
    "refusal": ("/imagine a cat --sed 3", "U1", "Unknown flag --sed"),
}


def measure(*, quick: bool = False, redis_url: str, repeats: int | None = None) -> dict[str, Any]:
    """Run the benchmark (see the module's docstring) and return its figures: per shape its
    command, ``median_ms`` and ``p90_ms`` (``shapes``), the ``rounds`` and the platforms'
    ``limit_ms``. ``repeats``: rounds (default 30; 10 with ``quick``)."""
    rounds = repeats if repeats is not None else 10 if quick else 30
    client = redis_lib.Redis.from_url(redis_url)
    prefix = new_prefix()
    with tempfile.TemporaryDirectory(prefix="proofroom-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        (Path(tmp) / "calendars").mkdir()  # no calendar posts into the bench's channel
        settings = isolated_settings(prefix=prefix, redis_url=redis_url, data_dir=data_dir)
        bot_settings = BotSettings(
            _env_file=None,  # type: ignore[call-arg]
            export_dir=data_dir / "approved",
            calendars_dir=Path(tmp) / "calendars",
        )
        try:
            chat = FakeChat(
                settings=settings, redis=client, bot_settings=bot_settings, worker=False
            )
            try:
                times = _run(chat, repeats=rounds)
            finally:
                chat.close()
        finally:
            wipe(client, prefix)  # the service's keys and the queued jobs
            client.close()
    return {
        "what": "/imagine answered by the service (grammar, catalog, Redis, job card), no worker",
        "rounds": rounds,
        "limit_ms": _ms(PLATFORM_LIMIT_S),
        "shapes": [
            {
                "shape": name,
                "command": command,
                "median_ms": _ms(statistics.median(times[name])),
                "p90_ms": _ms(_p90(times[name])),
            }
            for name, (command, _, _) in SHAPES.items()
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = _parser().parse_args(argv)
    figures = measure(redis_url=args.redis_url, repeats=args.repeats)
    print(f"{figures['what']}; {figures['rounds']} rounds, {args.redis_url}")
    print(f"{'shape':<10}{'median':>10}{'p90':>10}  command")
    for row in figures["shapes"]:
        median, p90 = _cell(row["median_ms"]), _cell(row["p90_ms"])
        print(f"{row['shape']:<10}{median:>10}{p90:>10}  {row['command']}")
    limit = _cell(figures["limit_ms"])
    print(f"{'limit':<10}{limit:>10}{limit:>10}  Slack's and Discord's time to answer")
    return 0


def _run(chat: FakeChat, *, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in SHAPES}
    for k in range(STATUS_JOBS):
        chat.command(f"/imagine a kite number {k} --n 1", user=STATUS_USER)
    for round_ in range(repeats + 1):
        for name, (command, user, expected) in SHAPES.items():
            started = time.perf_counter()
            reply = chat.command(command, user=user)
            elapsed = time.perf_counter() - started
            if not reply.text.startswith(expected):
                raise RuntimeError(f"{name}: {command!r} answered {reply.text!r}")
            if round_:  # round 0 warms up: catalog, connections, first parse
                times[name].append(elapsed)
    return times


def _p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _cell(ms: float) -> str:
    return f"{ms:.1f} ms"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 30)")
    add_redis_url(parser)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
