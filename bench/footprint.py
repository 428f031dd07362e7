"""Resident memory of the processes a team runs: the chat bot, idle and after 200 commands, and
an idle worker with its default model loaded.

    python bench/footprint.py                   # REDIS_URL or 127.0.0.1:6379
    python bench/footprint.py --quick --redis-url redis://host:6379/0

The chat processes must stay small (they may run where no GPU is, next to other services), so
the goal reported against is a bot under 150 MB resident. What runs:

- the bot: ``proofroom slack --http`` in a process of its own against the local fake Web API,
  as ``bench/ack.py`` runs it (no worker: jobs queue on a real Redis under a key prefix of the
  run). Measured once it has served one command and sat idle, then after 200 ``/imagine``
  commands (bursts of 50 signed requests, each answered "Queued job" before the next burst);
- the worker: ``proofroom worker`` (``python -m bot.cli worker``) on the same Redis, under a
  key prefix of its own so that it stays idle, started while the bot is measured and measured
  once it has preloaded the default model (``tiny``, on the CPU here) and sat idle.

Resident memory is read from ``/proc/<pid>/status`` (Linux): ``VmRSS`` now, ``VmHWM`` the
peak, ``RssAnon`` the part that is the process's own (heap, not shared library pages). The
Redis keys of the run are deleted at the end.

``measure(quick=..., redis_url=...)`` returns (sizes in MiB)::

    what                       str    one line: what was measured
    goal_bot_mb                float  150.0 (the goal says 150 MB; read as MiB)
    bot_idle_rss_mb            float  the bot after one command and a few idle seconds
    bot_idle_anon_mb           float  its RssAnon
    commands                   int    /imagine commands sent after the idle reading (200)
    commands_answered          int    of them, answered "Queued job"
    bot_after_rss_mb           float  the bot after the commands (answers all in)
    bot_after_anon_mb          float
    bot_peak_rss_mb            float  VmHWM: the most it was resident at any time
    worker_model               str    the model the worker preloaded
    worker_idle_rss_mb         float  the worker, idle, model loaded
    worker_idle_anon_mb        float
    worker_peak_rss_mb         float
    meets_goal                 bool   bot_peak_rss_mb under goal_bot_mb
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis as redis_lib  # noqa: E402

from bench.ack import CONCURRENCY, FakeWebApi, SlackBot, http_burst  # noqa: E402
from bench.common import add_redis_url  # noqa: E402
from engine.settings import REPO_ROOT  # noqa: E402
from tests.engine.jobs_fixtures import MODEL_CACHE, new_prefix, wipe  # noqa: E402

GOAL_BOT_MB = 150.0
COMMANDS = 200
DEFAULT_MODEL = "tiny"
MIB = 1024 * 1024


def memory(pid: int) -> dict[str, float]:
    """``VmRSS``, ``VmHWM`` and ``RssAnon`` of process ``pid`` in MiB (``/proc``, Linux)."""
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon"):
            figures[name] = round(int(value.split()[0]) * 1024 / MIB, 1)  # in kB
    return figures


def measure_bot(*, redis_url: str, prefix: str, workdir: Path, idle_s: float) -> dict[str, Any]:
    """The Slack bot's resident memory idle and after ``COMMANDS`` commands."""
    fake = FakeWebApi()
    bot = SlackBot(fake=fake, redis_url=redis_url, prefix=prefix, workdir=workdir, http=True)
    try:
        bot.wait_listening()
        # One command first: what any command loads (grammar, catalog, Redis and Web API
        # connections) belongs to the bot at rest.
        answered = _commands(bot, fake, users=["UWARM"], answered=0)
        time.sleep(idle_s)
        idle = memory(bot.pid)
        for burst in range(COMMANDS // CONCURRENCY):
            users = [f"U{burst:02d}{k:03d}" for k in range(CONCURRENCY)]
            answered = _commands(bot, fake, users=users, answered=answered)
        time.sleep(1.0)  # the pump's last posts
        after = memory(bot.pid)
        _, queued = fake.replies()
        if answered != COMMANDS + 1:
            raise RuntimeError(
                f"{COMMANDS + 1 - answered} commands were not answered:\n{bot.log_tail()}"
            )
    finally:
        bot.stop()
        fake.stop()
    return {
        "bot_idle_rss_mb": idle["VmRSS"],
        "bot_idle_anon_mb": idle["RssAnon"],
        "commands": COMMANDS,
        "commands_answered": queued - 1,  # less the warm-up
        "bot_after_rss_mb": after["VmRSS"],
        "bot_after_anon_mb": after["RssAnon"],
        "bot_peak_rss_mb": after["VmHWM"],
    }


def _commands(bot: SlackBot, fake: FakeWebApi, *, users: list[str], answered: int) -> int:
    done = http_burst(port=bot.port, users=users, response_url=fake.response_url)
    if done.errors:
        raise RuntimeError(f"commands not acknowledged: {done.errors}")
    return fake.wait_answered(total=answered + len(users))


class IdleWorker:
    """``proofroom worker`` started on Redis under ``prefix``; :meth:`measure` waits until it
    has preloaded the default model and reads its memory once it has sat idle."""

    def __init__(self, *, redis_url: str, prefix: str, workdir: Path) -> None:
        self.client = redis_lib.Redis.from_url(redis_url)
        self.name = f"{prefix}-footprint-{uuid.uuid4().hex[:6]}"
        self.stats_key = f"{prefix}:worker:{self.name}:stats"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFROOM_")}
        env |= {
            "REDIS_URL": redis_url,
            "PROOFROOM_KEY_PREFIX": prefix,
            "PROOFROOM_DATA_DIR": str(workdir / "data"),
            "PROOFROOM_LORA_DIR": str(workdir / "data" / "loras"),
            "PROOFROOM_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "PROOFROOM_TEMPLATES_DIR": str(REPO_ROOT / "templates"),
            "PROOFROOM_DEFAULT_MODEL": DEFAULT_MODEL,
            "PYTHONPATH": str(REPO_ROOT),
            "HF_HUB_OFFLINE": "1",
        }
        self.log_path = workdir / "worker.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker", "--name", self.name],
            cwd=workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def measure(self, *, idle_s: float, timeout: float = 120) -> dict[str, Any]:
        """The worker's figures (module docstring), once ready and idle for ``idle_s``."""
        # Its stats hash is written once the preload is done (engine.worker.start_context),
        # its RQ registration once it listens on the queues.
        deadline = time.monotonic() + timeout
        while not (
            self.client.exists(self.stats_key) and self.client.exists(f"rq:worker:{self.name}")
        ):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"proofroom worker did not get ready:\n{tail}")
            time.sleep(0.1)
        if not self.client.hget(self.stats_key, f"loads:{DEFAULT_MODEL}"):
            raise RuntimeError(f"the worker did not preload {DEFAULT_MODEL}")
        time.sleep(idle_s)
        idle = memory(self.proc.pid)
        return {
            "worker_model": DEFAULT_MODEL,
            "worker_idle_rss_mb": idle["VmRSS"],
            "worker_idle_anon_mb": idle["RssAnon"],
            "worker_peak_rss_mb": idle["VmHWM"],
        }

    def stop(self) -> None:
        """SIGTERM, as a supervisor stops it; killed if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.client.close()


def measure(*, quick: bool = False, redis_url: str) -> dict[str, Any]:
    """Run the benchmark (module docstring) and return its figures."""
    idle_s = 1.0 if quick else 3.0
    prefix = new_prefix()
    client = redis_lib.Redis.from_url(redis_url)
    figures: dict[str, Any] = {
        "what": (
            f"resident memory: proofroom slack --http idle and after {COMMANDS} /imagine "
            f"(fake Web API, no worker); proofroom worker idle with {DEFAULT_MODEL} loaded"
        ),
        "goal_bot_mb": GOAL_BOT_MB,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="proofroom-bench-") as tmp:
            (Path(tmp) / "bot").mkdir()
            (Path(tmp) / "worker").mkdir()
            # The worker loads torch and its model meanwhile (memory does not depend on speed),
            # under a prefix of its own so that the bot's jobs are not its: it stays idle. The
            # wipe below takes both (the worker's prefix starts with the bot's).
            worker = IdleWorker(
                redis_url=redis_url, prefix=prefix + "w", workdir=Path(tmp) / "worker"
            )
            try:
                figures |= measure_bot(
                    redis_url=redis_url, prefix=prefix, workdir=Path(tmp) / "bot", idle_s=idle_s
                )
                figures |= worker.measure(idle_s=idle_s)
            finally:
                worker.stop()
    finally:
        wipe(client, prefix)
        client.close()
    figures["meets_goal"] = figures["bot_peak_rss_mb"] < GOAL_BOT_MB
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = _parser().parse_args(argv)
    f = measure(quick=args.quick, redis_url=args.redis_url)
    print(f["what"])
    print(f"{'process':<34}{'resident':>10}{'own (anon)':>12}{'peak':>10}")
    rows = [
        ("bot idle", f["bot_idle_rss_mb"], f["bot_idle_anon_mb"], None),
        (
            f"bot after {f['commands']} commands",
            f["bot_after_rss_mb"],
            f["bot_after_anon_mb"],
            f["bot_peak_rss_mb"],
        ),
        (
            f"worker idle ({f['worker_model']} loaded)",
            f["worker_idle_rss_mb"],
            f["worker_idle_anon_mb"],
            f["worker_peak_rss_mb"],
        ),
    ]
    for name, rss, anon, peak in rows:
        print(f"{name:<34}{_mb(rss):>10}{_mb(anon):>12}{_mb(peak):>10}")
    print(f"{'goal: bot under':<34}{_mb(f['goal_bot_mb']):>10}")
    print("meets goal" if f["meets_goal"] else "does not meet the goal")
    return 0


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} MiB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="shorter idle waits")
    add_redis_url(parser)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
