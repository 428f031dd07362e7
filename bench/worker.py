"""What the worker costs on top of diffusers, how busy it keeps the pipeline, and what batching
buys, with the ``tiny`` model on this machine, side by side in one run.

    python bench/worker.py                      # REDIS_URL or 127.0.0.1:6379
    python bench/worker.py --quick --redis-url redis://host:6379/0

Two real ``proofroom worker`` processes (``python -m engine.worker``) on a real Redis, each
under a throwaway key prefix (its own queues and event stream): one with
``PROOFROOM_MICRO_BATCHING=0``, one as shipped (micro-batching on). Jobs are queued with
``engine.queue.JobQueue`` and their ends read from the event stream (``engine.events``).
The catalog is the repository's plus two entries over the same ``builtin:tiny`` source,
``bench-tiny-b1`` (``max_batch: 1``) and ``bench-tiny-b4`` (``max_batch: 4``).

Size: tiny at 64x64 (its smallest; 128x128 already takes seconds on a CPU, its VAE works
at full resolution) with as many steps as make one bare render take about 0.5 s here,
found by timing 2 and 6 steps first. What runs in each round, the order reversed every
other round so that a machine getting busier slows all of them alike:

- one by one: 8 jobs of one image (different prompts and seeds, otherwise the same) on the
  worker without micro-batching: one pipeline call per job, as the bare loop makes;
- bare: the same 8 images as 8 calls of the same pipeline in this process
  (``PipelineCache(...).acquire(model)``, the same sampler, PIL output, nothing stored);
- micro-batched: the same 8 jobs on the worker with micro-batching (one call of 8);
- ``--n 4``: one job of 4 images on ``bench-tiny-b1`` (four calls) and on ``bench-tiny-b4``
  (one call), on the worker without micro-batching.

The 8 jobs of a round are queued behind a job of other steps (which cannot merge with them)
so that all 8 wait while it renders: a saturated queue. A worker's time for them runs from
the first one's ``started`` event to the last one's ``done``; busy fraction is the growth of
the worker's ``busy_s`` (seconds inside pipeline calls, its stats hash) over that time.

Every process runs ``threads`` torch threads (default 1: two processes fighting over two
cores would measure the fight). ``measure(quick=..., redis_url=...)`` returns the figures
(times in milliseconds, ratios as plain numbers; ``*_rounds``: one value per round)::

    what                     str    one line: what was measured
    device, threads          str, int
    width, height, steps     int    the calibrated size
    sampler                  str
    rounds, jobs             int    rounds, and jobs per round (8)
    bare_ms_per_job          float  median over rounds
    worker_ms_per_job        float  one by one, median over rounds
    throughput_ratio         float  worker / bare throughput (bare ms / worker ms), median
    busy_fraction            float  one by one: pipeline seconds / wall seconds
    busy_fraction_micro      float  the same, micro-batched
    micro_calls              int    pipeline calls per micro-batched round (1 when all merged)
    one_by_one_images_per_s  float
    micro_images_per_s       float
    micro_batching_speedup   float  micro-batched / one by one images per second, median
    n4_calls_b1, n4_calls_b4 int    pipeline calls of the --n 4 job (4 and 1)
    n4_four_calls_images_per_s, n4_batched_images_per_s   float
    n4_batching_speedup      float  batched / four calls images per second, median
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis as redis_lib  # noqa: E402

from bench.common import add_redis_url  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from engine.events import JobEvent  # noqa: E402
from engine.queue import JobQueue  # noqa: E402
from engine.redis_values import as_text  # noqa: E402
from engine.settings import REPO_ROOT, Settings  # noqa: E402
from engine.spec import JobSpec  # noqa: E402
from tests.engine.jobs_fixtures import (  # noqa: E402
    WorkerProcess,
    isolated_settings,
    new_prefix,
    wipe,
)

MODEL = "tiny"
SIDE = 64
SAMPLER = "Euler a"
CFG = 7.0
TARGET_S = 0.5  # one bare render: long enough that the worker's per-job costs show in proportion
JOBS = 8  # micro-batching's 8 compatible jobs, and the one-by-one and bare rounds
BATCH_MODELS = {"bench-tiny-b1": 1, "bench-tiny-b4": 4}
PROMPTS = (
    "a red mug on a wooden table",
    "a green kite over a beach",
    "a blue bicycle in the rain",
    "a yellow lamp, studio light",
    "a leather handbag on marble",
    "a lighthouse at dusk, oil painting",
    "a bowl of oranges, morning light",
    "a paper boat on a puddle",
)
JOB_TIMEOUT_S = 300.0  # a job that takes longer on a busy 2-core machine is a hang


def measure(*, quick: bool = False, redis_url: str, threads: int = 1) -> dict[str, Any]:
    """Run the benchmark (see the module's docstring) and return its figures."""
    import torch

    rounds = 2 if quick else 5
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    client = redis_lib.Redis.from_url(redis_url)
    try:
        with tempfile.TemporaryDirectory(prefix="proofroom-bench-") as tmp, ExitStack() as stack:
            root = Path(tmp)
            templates = _templates(root / "templates")
            off = stack.enter_context(
                _worker(root, "off", client, redis_url, templates, threads=threads, micro=False)
            )
            on = stack.enter_context(
                _worker(root, "on", client, redis_url, templates, threads=threads, micro=True)
            )
            bare = Bare(off.settings)
            steps = bare.calibrate(quick=quick)
            jobs = Jobs(steps=steps)
            for rig in (off, on):  # untimed: first calls, the other models' loads
                rig.run_saturated(jobs.batch(round_=-1), blocker=jobs.blocker(round_=-1))
            for model in BATCH_MODELS:
                off.run_one(jobs.four(model, round_=-1))
            bare.run(jobs.batch(round_=-1))
            runs: dict[str, list[Any]] = {name: [] for name in ("off", "bare", "on", *BATCH_MODELS)}
            for round_ in range(rounds):
                batch, blocker = jobs.batch(round_=round_), jobs.blocker(round_=round_)
                legs: list[tuple[str, Callable[[], Any]]] = [
                    ("off", partial(off.run_saturated, batch, blocker=blocker)),
                    ("bare", partial(bare.run, batch)),
                    # The same ids again on the other prefix: its own queues and stream.
                    ("on", partial(on.run_saturated, batch, blocker=blocker)),
                    *((m, partial(off.run_one, jobs.four(m, round_=round_))) for m in BATCH_MODELS),
                ]
                for name, leg in legs if round_ % 2 == 0 else reversed(legs):
                    runs[name].append(leg())
            return _figures(runs, steps=steps, threads=threads, device=bare.device)
    finally:
        client.close()
        torch.set_num_threads(before)


@dataclass
class Saturated:
    """What a worker did with a batch of jobs queued behind a blocker."""

    wall_s: float  # first job's start to the last one's end
    # Seconds inside pipeline calls meanwhile, and those calls; None when the worker's
    # stats could not be read between the blocker's end and the batch's first end.
    busy_s: float | None
    calls: int | None


@dataclass
class Single:
    """One job: its time from start to end and the pipeline calls it took."""

    wall_s: float
    calls: int | None


class Jobs:
    """The specs of each round: fresh ids and seeds, the same shape."""

    def __init__(self, *, steps: int) -> None:
        self.steps = steps

    def spec(self, k: int, *, round_: int, **fields: Any) -> JobSpec:
        """Job ``k`` of round ``round_``: one of :data:`PROMPTS`, its own seed."""
        values: dict[str, Any] = {
            "prompt": PROMPTS[k % len(PROMPTS)],
            "model": MODEL,
            "width": SIDE,
            "height": SIDE,
            "steps": self.steps,
            "sampler": SAMPLER,
            "cfg_scale": CFG,
            "seed": 1000 * (round_ + 2) + k,
            "requested_by": f"U{k}",
            "origin": {"platform": "bench", "channel": "C1"},
            **fields,
        }
        return JobSpec(**values)

    def batch(self, *, round_: int) -> list[JobSpec]:
        """The :data:`JOBS` compatible jobs of a round."""
        return [self.spec(k, round_=round_) for k in range(JOBS)]

    def blocker(self, *, round_: int) -> JobSpec:
        """A job the batch cannot merge with (other steps), rendered while the batch queues."""
        return self.spec(0, round_=round_, steps=self.steps + 1, prompt="a grey wall")

    def four(self, model: str, *, round_: int) -> JobSpec:
        """One ``--n 4`` job on ``model``."""
        return self.spec(0, round_=round_, model=model, count=4)


class Rig:
    """A worker process, its queue and a reader of its event stream."""

    def __init__(
        self, *, settings: Settings, client: redis_lib.Redis, worker: WorkerProcess
    ) -> None:
        self.settings = settings
        self.client = client
        self.worker = worker
        self.queue = JobQueue(redis=client, settings=settings)
        self.ends = EventReader(client, self.queue.events.key)

    def run_saturated(self, specs: list[JobSpec], *, blocker: JobSpec) -> Saturated:
        """Queue ``specs`` behind ``blocker`` and wait for them all."""
        jobs_before = self._stats().get("jobs", 0)
        self.queue.enqueue(blocker)
        for spec in specs:
            self.queue.enqueue(spec)
        self.ends.wait([blocker.id], worker=self.worker)
        # The stats hash is rewritten as each job ends: read it between the blocker's end
        # and the batch's first end (a whole render later), else this run has no busy time.
        at_start = self._stats_at(jobs=jobs_before + 1)
        events = self.ends.wait([spec.id for spec in specs], worker=self.worker)
        at_end = self._stats_at(jobs=jobs_before + 1 + len(specs))
        started = min(events[spec.id]["started"].ts for spec in specs)
        ended = max(events[spec.id]["done"].ts for spec in specs)
        if at_start is None or at_end is None:
            return Saturated(wall_s=ended - started, busy_s=None, calls=None)
        return Saturated(
            wall_s=ended - started,
            busy_s=at_end["busy_s"] - at_start["busy_s"],
            calls=int(at_end["calls"] - at_start["calls"]),
        )

    def run_one(self, spec: JobSpec) -> Single:
        """Queue ``spec`` alone and wait for it."""
        at_start = self._stats()
        self.queue.enqueue(spec)
        events = self.ends.wait([spec.id], worker=self.worker)[spec.id]
        at_end = self._stats_at(jobs=int(at_start.get("jobs", 0)) + 1)
        return Single(
            wall_s=events["done"].ts - events["started"].ts,
            calls=None if at_end is None else int(at_end["calls"] - at_start["calls"]),
        )

    def _stats(self) -> dict[str, float]:
        raw: Any = self.client.hgetall(self.worker.stats_key)
        return {as_text(k): float(v) for k, v in raw.items()}

    def _stats_at(self, *, jobs: float) -> dict[str, float] | None:
        """The stats once ``jobs`` jobs have ended; None when more already had."""
        deadline = time.monotonic() + 30
        while True:
            stats = self._stats()
            if stats.get("jobs", 0) >= jobs:
                return stats if stats["jobs"] == jobs else None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker's stats never counted {jobs:.0f} jobs")
            time.sleep(0.005)  # the job's end and its stats are two writes apart


class EventReader:
    """The events of one stream as they arrive (XREAD BLOCK: this process sleeps while the
    worker renders, instead of polling on the cores the worker needs)."""

    def __init__(self, client: redis_lib.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self.last = "0-0"
        self.seen: dict[str, dict[str, JobEvent]] = {}

    def wait(self, job_ids: list[str], *, worker: WorkerProcess) -> dict[str, dict[str, JobEvent]]:
        """The events of ``job_ids`` by kind, once each has ended; a job that failed or was
        cancelled stops the benchmark with its message."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:
            ended = [j for j in job_ids if self._terminal(j) is not None]
            for job_id in ended:
                event = self._terminal(job_id)
                assert event is not None
                if event.kind != "done":
                    raise RuntimeError(
                        f"job {job_id} {event.kind}: {event.message}\n{worker.log_tail()}"
                    )
            if len(ended) == len(job_ids):
                return {job_id: self.seen[job_id] for job_id in job_ids}
            if worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs did not end in {JOB_TIMEOUT_S:.0f} s")
            self._read(block_ms=500)

    def _terminal(self, job_id: str) -> JobEvent | None:
        kinds = self.seen.get(job_id, {})
        return next((kinds[k] for k in ("done", "failed", "cancelled") if k in kinds), None)

    def _read(self, *, block_ms: int) -> None:
        reply: Any = self.client.xread({self.key: self.last}, block=block_ms, count=1000)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self.last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                event = JobEvent.model_validate_json(fields[b"event"])
                self.seen.setdefault(event.job_id, {}).setdefault(event.kind, event)


class Bare:
    """The same pipeline in this process, called as a script would call diffusers."""

    def __init__(self, settings: Settings) -> None:
        from engine.pipelines import PipelineCache
        from engine.spec import Mode

        self.cache = PipelineCache(settings=settings)
        self.device = self.cache.device
        catalog = Catalog.load(settings.templates_dir)
        loaded, _ = self.cache.acquire(catalog.model(MODEL))
        loaded.use_sampler(SAMPLER)
        self.pipe = loaded.pipeline(Mode.txt2img)

    def call(self, spec: JobSpec) -> None:
        """One image of ``spec``: one pipeline call."""
        import torch

        self.pipe(
            prompt=spec.prompt,
            width=spec.width,
            height=spec.height,
            num_inference_steps=spec.steps,
            guidance_scale=spec.cfg_scale,
            generator=[torch.Generator("cpu").manual_seed(spec.seed)],
            output_type="pil",
        )
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(self, specs: list[JobSpec]) -> float:
        """Seconds for one call per spec, one after another."""
        started = time.perf_counter()
        for spec in specs:
            self.call(spec)
        return time.perf_counter() - started

    def calibrate(self, *, quick: bool) -> int:
        """Steps at which one render takes about :data:`TARGET_S`: a line through the
        medians at 2 and 6 steps (a fixed cost plus a cost per step)."""
        jobs = Jobs(steps=2)
        repeats = 2 if quick else 3
        self.call(jobs.spec(0, round_=-1))  # warm-up
        medians = {}
        for steps in (2, 6):
            spec = Jobs(steps=steps).spec(0, round_=-1)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                self.call(spec)
                times.append(time.perf_counter() - started)
            medians[steps] = statistics.median(times)
        per_step = (medians[6] - medians[2]) / 4
        if per_step <= 0:  # noise swamped the difference
            return 4
        fixed = medians[2] - 2 * per_step
        return max(2, min(50, round((TARGET_S - fixed) / per_step)))


def _templates(folder: Path) -> Path:
    """The repository's catalog plus the two ``max_batch`` entries of :data:`BATCH_MODELS`."""
    shutil.copytree(REPO_ROOT / "templates", folder)
    entries = "".join(
        f"\n{name}:\n  source: builtin:tiny\n  family: sd15\n  max_batch: {cap}\n"
        f"  width: {SIDE}\n  height: {SIDE}\n  sampler: {SAMPLER}\n"
        for name, cap in BATCH_MODELS.items()
    )
    with (folder / "models.yaml").open("a") as models:
        models.write(entries)
    return folder


@contextmanager
def _worker(
    root: Path,
    label: str,
    client: redis_lib.Redis,
    redis_url: str,
    templates: Path,
    *,
    threads: int,
    micro: bool,
) -> Iterator[Rig]:
    """A worker process under a key prefix of its own; its keys are deleted afterwards."""
    prefix = new_prefix()
    data = root / label
    empty = root / "none"  # the developer's drop-in model folders stay out of the catalog
    folders = {
        "model_dir": empty / "models",
        "embedding_dir": empty / "embeddings",
        "vae_dir": empty / "vaes",
    }
    settings = isolated_settings(prefix=prefix, redis_url=redis_url, data_dir=data).model_copy(
        update={"templates_dir": templates, "micro_batching": micro, **folders}
    )
    env = {
        "PROOFROOM_MICRO_BATCHING": "1" if micro else "0",
        **{f"PROOFROOM_{name.upper()}": str(path) for name, path in folders.items()},
        "OMP_NUM_THREADS": str(threads),
    }
    data.mkdir(parents=True)
    worker = WorkerProcess(
        settings,
        log_path=data / "worker.log",
        heartbeat_ttl=15.0,  # the shipped defaults: no extra heartbeat traffic
        heartbeat_interval=5.0,
        env=env,
    )
    try:
        worker.wait_ready(client, timeout=300)
        yield Rig(settings=settings, client=client, worker=worker)
    finally:
        worker.stop()
        wipe(client, prefix)


def _figures(
    runs: dict[str, list[Any]], *, steps: int, threads: int, device: str
) -> dict[str, Any]:
    off: list[Saturated] = runs["off"]
    on: list[Saturated] = runs["on"]
    bare: list[float] = runs["bare"]
    b1: list[Single] = runs["bench-tiny-b1"]
    b4: list[Single] = runs["bench-tiny-b4"]
    throughput = [b / o.wall_s for b, o in zip(bare, off, strict=True)]
    micro = [o.wall_s / m.wall_s for o, m in zip(off, on, strict=True)]
    n4 = [one.wall_s / batched.wall_s for one, batched in zip(b1, b4, strict=True)]
    return {
        "what": (
            f"{MODEL} {SIDE}x{SIDE}, {steps} steps, {SAMPLER}: {JOBS} jobs through queue, "
            "worker (subprocess), store and events vs a bare diffusers loop; micro-batching "
            "on/off; --n 4 batched vs four calls"
        ),
        "device": device,
        "threads": threads,
        "width": SIDE,
        "height": SIDE,
        "steps": steps,
        "sampler": SAMPLER,
        "rounds": len(off),
        "jobs": JOBS,
        "bare_ms_per_job": _ms(statistics.median(bare) / JOBS),
        "worker_ms_per_job": _ms(statistics.median(o.wall_s for o in off) / JOBS),
        "throughput_ratio": _ratio(statistics.median(throughput)),
        "throughput_ratio_rounds": [_ratio(r) for r in throughput],
        "busy_fraction": _busy(off),
        "busy_fraction_micro": _busy(on),
        "one_by_one_calls": _median_int(o.calls for o in off),
        "micro_calls": _median_int(m.calls for m in on),
        "one_by_one_images_per_s": _ratio(JOBS / statistics.median(o.wall_s for o in off)),
        "micro_images_per_s": _ratio(JOBS / statistics.median(m.wall_s for m in on)),
        "micro_batching_speedup": _ratio(statistics.median(micro)),
        "micro_batching_speedup_rounds": [_ratio(r) for r in micro],
        "n4_calls_b1": _median_int(s.calls for s in b1),
        "n4_calls_b4": _median_int(s.calls for s in b4),
        "n4_four_calls_images_per_s": _ratio(4 / statistics.median(s.wall_s for s in b1)),
        "n4_batched_images_per_s": _ratio(4 / statistics.median(s.wall_s for s in b4)),
        "n4_batching_speedup": _ratio(statistics.median(n4)),
        "n4_batching_speedup_rounds": [_ratio(r) for r in n4],
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _ratio(value: float) -> float:
    return round(value, 3)


def _busy(runs: list[Saturated]) -> float | None:
    """Pipeline seconds over wall seconds, over the runs whose stats were read in time."""
    read = [run for run in runs if run.busy_s is not None]
    if not read:
        return None
    return _ratio(sum(run.busy_s or 0.0 for run in read) / sum(run.wall_s for run in read))


def _median_int(values: Any) -> int | None:
    known = [value for value in values if value is not None]
    return int(statistics.median(known)) if known else None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    args = _parser().parse_args(argv)
    figures = measure(quick=args.quick, redis_url=args.redis_url, threads=args.threads)
    print(figures.pop("what"))
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {json.dumps(value)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    add_redis_url(parser)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
