"""The soak: many commands from many users through the fake chat, on the real queue, event
stream and store, with a real ``proofroom worker`` process (``tiny``) killed half-way; then
the invariants, and Redis after the TTLs.

    python bench/soak.py                                    # make soak: 500 commands, 20 users
    python bench/soak.py --commands 150 --users 20 --seed 7

What the users do (seeded: ``random.Random(seed)``, the seed is printed, so a failure
reproduces with ``--seed``): ``/imagine`` on ``tiny`` (64x64, 1 step, 1-2 images),
``/imagine cancel`` of one of their jobs, ✅/❌ reactions on posted images (some delivered
twice with the same event id, as Slack re-delivers), 🔁 re-renders, ``/imagine status``.
The bot pumps job events between commands, as its loop would; users wait for their images
(at most :data:`MAX_OPEN` jobs open at once). A second worker process loads its model beside
the first; from the middle of the run on, the first is killed (SIGKILL) at a moment it is
rendering, so its jobs are recovered by the second (a pause with no worker as long as the
TTLs would expire the very state the checks read; in a deployment TTLs are days).

The invariants checked at the end (``bench.soak_checks.check``):

- every job the bot queued (re-renders included) ended exactly once: one terminal event in
  the stream, one end shown in its thread, the ``outcomes`` counter counts each once, and
  none is left recorded as rendering;
- every image of a finished job was posted exactly once (its file name carries job, index
  and seed), and no image of a cancelled or failed job was;
- every reaction was counted once: one audit entry per event id (a re-delivered event adds
  none), each image's votes are each user's latest vote, and the approved images are exactly
  the exported ones;
- no key of the run is left without a TTL except the durable ones of
  :func:`bot.state.durable_key_patterns`;
- Redis memory (``MEMORY USAGE`` summed over the run's keys: the server is shared, so
  ``INFO`` is not usable) is back near where it started once the TTLs, set in seconds
  through the ordinary settings (``PROOFROOM_STATE_TTL_S``, ``PROOFROOM_RESULT_TTL_S``,
  ``PROOFROOM_LEDGER_TTL_S``), have passed: every key left is durable or one of
  :data:`bench.soak_checks.KEPT_LONGER`, and the growth is under 8 KiB or 5 % of the peak.

``run_soak`` is shared by ``tests/soak/test_soak.py`` (a small size in ``make test``) and
``make soak`` (the full size, figures printed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one torch thread per process on shared cores
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import redis as redis_lib  # noqa: E402

from bench.common import add_redis_url  # noqa: E402
from bench.soak_checks import (  # noqa: E402
    Soak,
    after_ttls,
    check,
    memory,
)
from bot.settings import BotSettings  # noqa: E402
from bot.testing.chat import FakeChat  # noqa: E402
from engine.events import TERMINAL_KINDS  # noqa: E402
from engine.redis_values import as_text  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.tasks import running_key  # noqa: E402
from tests.engine.jobs_fixtures import (  # noqa: E402
    WorkerProcess,
    isolated_settings,
    new_prefix,
    wipe,
)

JOB_TIMEOUT_S = 20  # tiny at 64x64, 1 step: well under a second; a hang fails the job
MAX_OPEN = 8  # jobs open at once: users wait for their images before asking for more
# What a user does next, by weight.
ACTIONS = {"imagine": 40, "react": 30, "cancel": 10, "rerender": 8, "status": 12}
VOTES = ("approve", "reject")  # three to one: one reject vetoes an image
REDELIVER_EVERY = 5  # the 1st, 6th, 11th... reaction is delivered again (same event id)
PROMPTS = ("a red mug", "a green kite", "a blue bicycle", "a paper boat", "a brass lamp")


def run_soak(
    *,
    settings: Settings,
    redis: redis_lib.Redis,
    bot_settings: BotSettings,
    log_dir: Path,
    commands: int,
    users: int,
    seed: int,
    ttl_s: int,
    say: Callable[[str], object] = print,
) -> Soak:
    """Run the soak (see the module docstring) under ``settings.key_prefix`` and return what
    it did, its figures and the invariants it found broken (empty: all held). ``ttl_s``:
    the state, result and ledger TTLs of the run, in seconds: longer than a job waits and
    renders (the driver keeps at most :data:`MAX_OPEN` jobs open, as users who wait for
    their images would)."""
    say(f"soak: seed {seed}, {commands} commands from {users} users, TTLs {ttl_s} s")
    settings = settings.model_copy(
        update={"result_ttl_s": ttl_s, "ledger_ttl_s": ttl_s, "job_timeout_s": JOB_TIMEOUT_S}
    )
    bot_settings = bot_settings.model_copy(
        update={"state_ttl_s": ttl_s, "default_count": 1, "max_rerenders": 2}
    )
    soak = Soak(seed=seed, ttl_s=ttl_s)
    rng = random.Random(seed)
    names = [f"U{k:02d}" for k in range(users)]
    # The worker reads the same TTLs from its environment, as a deployment's would.
    env = {
        "PROOFROOM_RESULT_TTL_S": str(ttl_s),
        "PROOFROOM_LEDGER_TTL_S": str(ttl_s),
        "PROOFROOM_JOB_TIMEOUT_S": str(JOB_TIMEOUT_S),
        "OMP_NUM_THREADS": "1",
    }
    started = time.monotonic()
    worker = WorkerProcess(settings, log_path=log_dir / "worker-1.log", env=env)
    chat = FakeChat(settings=settings, redis=redis, bot_settings=bot_settings, worker=False)
    # The replacement loads its model beside the first, so it is ready to take over when the
    # first is killed: a pause without a worker longer than the TTLs would expire the state
    # the run checks (in a deployment, TTLs are days and a restart takes seconds).
    replacement: WorkerProcess | None = WorkerProcess(
        settings, log_path=log_dir / "worker-2.log", env=env
    )
    try:
        worker.wait_ready(redis, timeout=180)
        replacement.wait_ready(redis, timeout=180)
        before = memory(redis, settings.key_prefix)
        say(f"soak: workers ready in {time.monotonic() - started:.1f} s; {before} bytes")
        started = time.monotonic()
        for step in range(commands):
            if (
                replacement is not None
                and step >= commands // 2
                and _kill_when_busy(worker, replacement, redis, soak=soak, step=step, say=say)
            ):
                worker, replacement = replacement, None
            _act(chat, soak, rng, user=rng.choice(names))
        if replacement is not None:  # never caught rendering: kill it now, idle
            _kill_when_busy(worker, replacement, redis, soak=soak, step=commands, say=say, now=True)
            worker, replacement = replacement, None
        # Within the TTLs, or the state the checks read is gone.
        _wait_all_ended(chat, soak, timeout=ttl_s * 2 / 3)
        soak.figures["run_s"] = round(time.monotonic() - started, 1)
        peak = memory(redis, settings.key_prefix)
        check(chat, soak, settings=settings)
    finally:
        worker.stop()
        if replacement is not None:
            replacement.stop()
    soak.figures["memory_before_bytes"] = before
    soak.figures["memory_peak_bytes"] = peak
    after_ttls(redis, settings, soak, before=before, peak=peak, say=say)
    soak.figures["seed"] = seed
    return soak


def _act(chat: FakeChat, soak: Soak, rng: random.Random, *, user: str) -> None:
    """One user action, then the bot's loop reads job events once."""
    _wait_for_room(chat)
    now = time.monotonic()
    for message in list(chat.adapter.messages.values()):
        if message.is_image:
            soak.posted_at.setdefault(message.ref.id, now)
    action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
    # Reactions go to images posted lately: the state TTL of the run is seconds.
    recent = [
        m
        for m in chat.adapter.messages.values()
        if m.is_image and now - soak.posted_at[m.ref.id] < soak.ttl_s / 2
    ]
    if action in ("react", "rerender") and not recent:
        action = "imagine"
    soak.commands[action] += 1
    if action == "imagine":
        prompt = f"{rng.choice(PROMPTS)} {soak.commands['imagine']}"
        reply = chat.command(
            f"/imagine {prompt} --size 64x64 --steps 1 --n {rng.randint(1, 2)}", user=user
        )
        if reply.thread is None:
            soak.fail(f"/imagine by {user} opened no thread: {reply.text}")
    elif action == "status":
        reply = chat.command("/imagine status", user=user)
        if not reply.text.startswith(("Your jobs", "You have no jobs")):
            soak.fail(f"/imagine status answered {reply.text!r}")
    elif action == "cancel":
        mine = chat.service.queue.jobs_for(f"{chat.adapter.platform}:{user}")
        if not mine:
            chat.command("/imagine cancel nosuchjob", user=user)
        else:
            reply = chat.command(f"/imagine cancel {rng.choice(mine).job_id}", user=user)
            soak.cancels_accepted += reply.text.startswith("Cancelling")
    else:
        image = rng.choice(recent)
        vote = "rerender" if action == "rerender" else rng.choices(VOTES, weights=(3, 1))[0]
        event_id = f"soak-{len(soak.reactions) + 1}"
        if chat.service.state.image(image.ref) is None:
            soak.forgotten.add(event_id)  # expired already: it must change nothing
        soak.reactions[event_id] = (image.ref.id, user, vote)
        chat.react(image, vote, user=user, event_id=event_id)
        if len(soak.reactions) % REDELIVER_EVERY == 1:
            soak.redelivered += 1
            chat.react(image, vote, user=user, event_id=event_id)
    chat.pump(block_ms=20)
    soak.tail(chat.redis, chat.service.events.key)


def _wait_for_room(chat: FakeChat) -> None:
    """Users wait for their images: no new action while MAX_OPEN jobs are open."""
    deadline = time.monotonic() + JOB_TIMEOUT_S * 3
    while len(chat.service.state.open_jobs(chat.adapter.platform)) >= MAX_OPEN:
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs stay open:\n{chat.dump()}")
        chat.pump(block_ms=100)


def _wait_all_ended(chat: FakeChat, soak: Soak, *, timeout: float) -> None:
    """Pump until every job queued in the run has ended and been shown (the bot's own list
    of open jobs expires with the state TTL, so it alone cannot tell), or ``timeout``: a
    job that never ends is then reported by :func:`check`."""
    deadline = time.monotonic() + timeout
    while True:
        soak.tail(chat.redis, chat.service.events.key)
        queued = {e["job_id"] for e in soak.events if e["kind"] == "queued"}
        ended = {e["job_id"] for e in soak.events if e["kind"] in TERMINAL_KINDS}
        shown = not chat.service.state.open_jobs(chat.adapter.platform)
        if (queued <= ended and shown) or time.monotonic() > deadline:
            break
        chat.pump(block_ms=200)
    while chat.pump(block_ms=10):
        pass
    soak.tail(chat.redis, chat.service.events.key)


def _kill_when_busy(
    worker: WorkerProcess,
    replacement: WorkerProcess,
    redis: redis_lib.Redis,
    *,
    soak: Soak,
    step: int,
    say: Callable[[str], object],
    now: bool = False,
) -> bool:
    """Once ``replacement`` is ready, kill ``worker`` while it renders (SIGKILL: its jobs are
    abandoned; the replacement's recovery requeues them, and each must still end once);
    False while that moment has not come."""
    ready = redis.exists(replacement.stats_key) and redis.exists(f"rq:worker:{replacement.name}")
    if replacement.proc.poll() is not None:
        raise AssertionError(f"the new worker exited:\n{replacement.log_tail()}")
    if not (ready or now):
        return False

    def rendering() -> list[str]:
        jobs = redis.hgetall(running_key(worker.settings)).items()
        return [as_text(job) for job, name in jobs if as_text(name) == worker.name]

    # Renders take a fraction of a second: look closely for one for a moment.
    deadline = time.monotonic() + (0 if now else 3)
    while not (running := rendering()) and time.monotonic() < deadline:
        time.sleep(0.005)
    if not (running or now):
        return False
    soak.restart_at, soak.running_at_kill = step, len(running)
    say(f"soak: killing the first worker at command {step}, rendering {running}")
    worker.signal(signal.SIGKILL)
    worker.wait()
    worker.stop()
    return True


def main(argv: list[str] | None = None) -> int:
    """``make soak``: the full run, its figures printed as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--ttl-s", type=int, default=20, help="state, result and ledger TTLs")
    add_redis_url(parser)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    prefix = new_prefix()
    client = redis_lib.Redis.from_url(args.redis_url)
    with tempfile.TemporaryDirectory(prefix="proofroom-soak-") as tmp:
        root = Path(tmp)
        settings = isolated_settings(
            prefix=prefix, redis_url=args.redis_url, data_dir=root / "data", device="cpu"
        )
        bot_settings = BotSettings(_env_file=None, export_dir=root / "approved")  # type: ignore[call-arg]
        try:
            soak = run_soak(
                settings=settings,
                redis=client,
                bot_settings=bot_settings,
                log_dir=root,
                commands=args.commands,
                users=args.users,
                seed=seed,
                ttl_s=args.ttl_s,
            )
        finally:
            wipe(client, prefix)
            client.close()
    print(json.dumps(soak.figures, indent=2, default=str))
    for violation in soak.violations:
        print(f"VIOLATION: {violation}")
    print(f"soak: {'FAILED' if soak.violations else 'passed'} (seed {seed})")
    return 1 if soak.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
