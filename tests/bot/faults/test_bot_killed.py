"""``kill -9`` of the bot process (``proofroom slack``) while a job renders, then again while
it posts the job's images: each restarted bot posts what the dead one missed, and nothing
twice; the progress message ends at "Done", not at a step.

Real processes (the bot, an RQ worker rendering ``tiny``), the real Redis; Slack is the
recording fake. The fake answers the upload of an image's bytes slowly, so the second kill
lands between two images."""

from __future__ import annotations

import signal
import time

import pytest

from engine.events import EventStream
from tests.bot.faults.conftest import Faults, both_images_once, until, wait_ready
from tests.engine.jobs_fixtures import wait_kind

pytestmark = pytest.mark.slow


def test_a_bot_killed_mid_job_and_mid_posting_posts_every_image_once(faults: Faults) -> None:
    fake = faults.fake
    events = EventStream(redis=faults.redis, settings=faults.settings)
    wait_ready(faults)
    first = faults.start_bot()

    job_id = faults.imagine("a red fox in the snow --n 2 --steps 8 --seed 7")
    thread = faults.thread_of(job_id)

    # (a) kill -9 while the worker renders the job. The worker is paused (SIGSTOP) at its
    # first step meanwhile, so the job surely ends after the bot died, however busy the CPU.
    wait_kind(events, job_id, "progress", timeout=60)
    faults.worker.signal(signal.SIGSTOP)
    first.kill()
    killed_at = time.time()
    # The bytes of each image go up slowly (2 s): the next kill lands between two images.
    fake.delay("upload", 2.0, times=2)
    faults.worker.signal(signal.SIGCONT)
    until(lambda: events.terminal_kind(job_id), faults=faults, what="the job to end")
    [done] = [e for e in events.history(job_id) if e.kind == "done"]
    # The job ended after the bot died: the dead bot never saw its result.
    assert done.ts > killed_at

    # (b) a new bot picks the job up; kill -9 it once the first image is in the thread and
    # the second one's bytes are on their way.
    second = faults.start_bot()
    until(
        lambda: fake.started("upload") >= 2 and len(fake.shared_files(thread=thread)) == 1,
        faults=faults,
        what="the first image posted and the second on its way",
    )
    second.kill()
    assert faults.shares(thread) == 1

    faults.start_bot()
    both_images_once(faults, fake, thread)
    assert len([c for c in fake.calls_to("files.completeUploadExternal") if c.status == 200]) == 2

    # One progress message for the job, through three bot processes, and it ends at Done.
    [progress] = faults.progress_messages(thread)
    final = faults.last_text(str(progress.response["ts"]), str(progress.args["text"]))
    assert "Done: 2 images" in final, final
