"""Which images share one pipeline call: a job's own, and other jobs' (issue 15). No torch.

Batched rendering. A job's images go through the pipeline together, at most ``max_batch`` per
call: the model's ``max_batch`` in models.yaml, else its family's default
(:data:`FAMILY_MAX_BATCH`). Image k still starts from the noise of seed + k drawn from its own
CPU generator, so a solo render of seed + k gives the same image within float rounding
(``render.py`` states the measured tolerance).

Micro-batching. When a worker takes a job from its queue, the jobs waiting in the same
pool's queues that could share its forward pass (:func:`merge_key`: same model, LoRAs and
weights, size, steps, sampler and CFG, all txt2img; prompts and seeds may differ) ride along
in the same call, each with its own generators, events and thread. Nobody waits for a batch
to fill: only jobs already waiting are taken. The rule for priorities (:func:`companions`):

- candidates are read interactive queue first, then bulk, each in queue order;
- a job rides along only if the call then stays within the model's ``max_batch``. A job
  whose own images already fill the cap is rendered alone, so a bulk job never makes an
  interactive call bigger than its cap, and never takes a slot before a waiting
  compatible interactive job;
- an interactive job that arrives while bulk jobs wait is taken first (RQ pops the
  interactive queue first; ``engine.queue``), whether or not it can be merged.

Skipping an incompatible job to take a compatible one behind it is the point: the skipped job
waits at most one call longer, and it is the first candidate of the next call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.catalog import ModelEntry
from engine.spec import JobSpec, Mode

# Images per call when models.yaml does not say. A batch of 8 at 512^2 (SD1.5, SD2) and
# 4 at 1024^2 (SDXL) fit in the memory of a 24 GB GPU with room for the VAE decode.
FAMILY_MAX_BATCH: dict[str, int] = {"sd15": 8, "sd2": 8, "sdxl": 4}
# A CPU gains less from batching and loses it past a few images (its caches): bare diffusers
# on 2 cores rendered a batch of 4 1.32x faster than four calls of one, a batch of 8 only
# 1.10x faster than eight.
CPU_MAX_BATCH = 4

# How far into each queue a worker looks for jobs to merge: the tail of a 10 000-row CSV
# batch is not worth reading on every call.
SCAN_DEPTH = 32

# How far an image of a batch may be from the same seed rendered alone, in levels of the
# PNG's 8 bits per channel: matmul rounding depends on the batch size. Measured on CPU with
# the tiny models: a batch of 4 against four solo renders, at most 1 level (1/255).
BATCH_TOLERANCE = 1

T = TypeVar("T")
Slot = tuple[int, int]  # (position of the job in the group, image index within the job)


@dataclass
class CallCounters:
    """What a worker's pipeline calls did: calls, images, jobs that rode along in another
    job's call, and seconds spent in the pipeline's models (the busy time: its text
    encoders on the prompts, then the calls' denoising and decoding). Written to the
    worker's stats hash (``engine.worker.WorkerStats``)."""

    calls: int = 0
    images: int = 0
    merged: int = 0
    busy_s: float = 0.0

    def add(self, *, images: int, seconds: float) -> None:
        """Count one call of ``images`` images that took ``seconds``."""
        self.calls += 1
        self.images += images
        self.busy_s += seconds


def max_batch(model: ModelEntry, *, device: str) -> int:
    """The most images of ``model`` one pipeline call renders on ``device``: its
    ``max_batch``, else its family's default (at most :data:`CPU_MAX_BATCH` on a CPU)."""
    if model.max_batch:
        return model.max_batch
    default = FAMILY_MAX_BATCH.get(model.family, 1)
    return min(default, CPU_MAX_BATCH) if device.startswith("cpu") else default


def merge_key(spec: JobSpec) -> tuple[Any, ...] | None:
    """What jobs must have in common to share a forward pass; ``None`` for a job that is
    rendered in calls of its own (img2img, inpainting and ControlNet carry per-job inputs)."""
    if spec.mode is not Mode.txt2img:
        return None
    # The adapters' weights are set once per call, so the weights must match too; their
    # order does not change the sum they add to each layer.
    loras = tuple(sorted((ref.name, ref.weight) for ref in spec.loras))
    return (spec.model, loras, spec.width, spec.height, spec.steps, spec.sampler, spec.cfg_scale)


def companions(
    leader: JobSpec, candidates: Iterable[tuple[T, JobSpec]], *, cap: int
) -> list[tuple[T, JobSpec]]:
    """The candidates (interactive first, then bulk, each in queue order) that ride along
    in ``leader``'s call: those with its :func:`merge_key` that fit whole within ``cap``
    images, in that order."""
    key = merge_key(leader)
    room = cap - leader.count
    chosen: list[tuple[T, JobSpec]] = []
    if key is None:
        return chosen
    for item, spec in candidates:
        if room <= 0:
            break
        if spec.id != leader.id and spec.count <= room and merge_key(spec) == key:
            chosen.append((item, spec))
            room -= spec.count
    return chosen


def plan_calls(counts: Sequence[int], *, cap: int) -> list[list[Slot]]:
    """The pipeline calls that render jobs of ``counts`` images, in order: every image as a
    (job, index) slot, at most ``cap`` slots per call, a job's images in index order."""
    slots = [(job, index) for job, count in enumerate(counts) for index in range(count)]
    return [slots[start : start + cap] for start in range(0, len(slots), max(cap, 1))]
