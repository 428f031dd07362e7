"""The Slack Web API failing under a running bot process (``proofroom slack``, a real worker
process, the real Redis; Slack is the recording fake):

- transient failures (HTTP 500/502/503, a reset connection, an answer slower than the bot's
  timeout) are retried, and each image arrives once, also when the request whose answer
  was lost had in fact shared the image; an outage of twenty seconds is waited out;
- a channel that refuses the bot for good mid-job (``channel_not_found``) keeps the images
  in the store; the requester is told by direct message how to get them
  (``/imagine repost JOB``), and ``repost`` posts them once access is back.
"""

from __future__ import annotations

import signal
import time

import pytest

from bot.records import JobRecord
from bot.state import BotState
from engine.events import EventStream
from engine.spec import JobResult
from engine.store import store_from_settings
from tests.bot.faults.conftest import (
    CHANNEL,
    REQUESTER,
    Faults,
    both_images_once,
    until,
    wait_ready,
)
from tests.engine.jobs_fixtures import wait_kind

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0  # the bot's Web API timeout here: a slow answer is a timeout


def test_transient_failures_are_retried_and_each_image_arrives_once(faults: Faults) -> None:
    fake = faults.fake
    wait_ready(faults)
    faults.start_bot(api_timeout_s=TIMEOUT_S)
    # The job card fails twice (503, then 502) before it is posted.
    fake.server_error("chat.postMessage", status=503)
    fake.server_error("chat.postMessage", status=502)
    fake.reset("chat.update")  # an edit of the progress message
    fake.server_error("upload", status=500)  # the bytes of the first image
    # The first image's share lands but its answer comes after the bot gave up waiting;
    # the second's connection is reset after it landed. Neither may be shared twice.
    fake.delay("files.completeUploadExternal", TIMEOUT_S + 1.5)
    fake.reset("files.completeUploadExternal", processed=True)
    fake.server_error("files.info", status=500)

    job_id = faults.imagine("a lighthouse at dusk --n 2 --steps 2 --seed 3")
    thread = faults.thread_of(job_id)
    both_images_once(faults, fake, thread)

    # Every fault happened, and each was followed by a try that worked.
    statuses = {m: [c.status for c in fake.calls_to(m)] for m in ("chat.postMessage", "upload")}
    assert statuses["chat.postMessage"][:3] == [503, 502, 200], statuses
    assert statuses["upload"][:2] == [500, 200], statuses
    assert 0 in [c.status for c in fake.calls_to("chat.update")]  # the reset edit
    completes = fake.calls_to("files.completeUploadExternal")
    assert [c.status for c in completes] == [200, 0], "a share was repeated"
    assert fake.started("files.completeUploadExternal") == 2

    # One card (the failed tries posted nothing), one progress message, ending at Done.
    assert [c.args["channel"] for c in fake.calls_to("chat.postMessage")] == [CHANNEL] * 4
    [progress] = faults.progress_messages(thread)
    final = faults.last_text(str(progress.response["ts"]), str(progress.args["text"]))
    assert "Done: 2 images" in final, final


def test_an_outage_longer_than_a_few_tries_is_waited_out(faults: Faults) -> None:
    """Slack answers 503 to every upload for about twenty seconds: more than five reads of
    the job's end (three calls each) fail. The end of a job is not given up that soon."""
    fake = faults.fake
    wait_ready(faults)
    faults.start_bot()
    fake.server_error("files.getUploadURLExternal", status=503, times=16)

    job_id = faults.imagine("a kite over dunes --n 1 --steps 2 --seed 9")
    thread = faults.thread_of(job_id)
    until(lambda: fake.shared_files(thread=thread), faults=faults, what="the image", timeout=120)
    time.sleep(1.0)  # time for a stray repeat to show
    assert faults.shares(thread) == 1
    tries = [c.status for c in fake.calls_to("files.getUploadURLExternal")]
    assert tries == [503] * 16 + [200], tries
    [progress] = faults.progress_messages(thread)
    final = faults.last_text(str(progress.response["ts"]), str(progress.args["text"]))
    assert "Done: 1 image" in final, final


def test_a_channel_lost_mid_job_keeps_the_images_until_repost(faults: Faults) -> None:
    fake = faults.fake
    events = EventStream(redis=faults.redis, settings=faults.settings)
    wait_ready(faults)
    faults.start_bot()

    job_id = faults.imagine("a teapot on a shelf --n 2 --steps 8 --seed 5")
    thread = faults.thread_of(job_id)
    until(lambda: faults.progress_messages(thread), faults=faults, what="the progress message")
    # Mid-job the bot is removed from the channel: every call about it is refused. (The
    # worker is paused at its first step meanwhile, so the job surely ends after it.)
    wait_kind(events, job_id, "progress", timeout=60)
    faults.worker.signal(signal.SIGSTOP)
    fake.refuse_channel(CHANNEL, "channel_not_found")
    faults.worker.signal(signal.SIGCONT)

    # The requester hears it once, by direct message (the channel refuses ephemerals too).
    notices = until(
        lambda: [c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == REQUESTER],
        faults=faults,
        what="the direct message to the requester",
    )
    until(lambda: events.terminal_kind(job_id), faults=faults, what="the job to end")
    time.sleep(1.5)  # the done event is shown (refused) meanwhile: no second notice
    notices = [c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == REQUESTER]
    assert len(notices) == 1, [n.args["text"] for n in notices]
    assert f"/imagine repost {job_id}" in notices[0].args["text"]
    assert "Invite me" in notices[0].args["text"]
    assert faults.shares(thread) == 0

    # The images are kept: the job's result names them, and the store has their bytes.
    state = BotState(redis=faults.redis, key_prefix=faults.settings.key_prefix, ttl_s=3600)
    fields = until(
        lambda: "result" in state.job_fields(job_id) and state.job_fields(job_id),
        faults=faults,
        what="the job's result kept",
    )
    result = JobResult.model_validate_json(fields["result"])
    store = store_from_settings(faults.settings)
    assert [store.get(i.artifact_id)[:4] for i in result.images] == [b"\x89PNG"] * 2
    assert JobRecord.model_validate_json(fields["record"]).thread.id == thread

    # Access is back: repost posts both images once, and the progress message says Done.
    fake.admit_channel(CHANNEL)
    answer = faults.mention(f"repost {job_id}")
    assert answer == f"Posted the images of job `{job_id}` in its thread.", answer
    assert faults.shares(thread) == 2
    images = fake.shared_files(thread=thread)
    assert [i["initial_comment"].split(" \u00b7 ")[0] for i in images] == [
        "Image 1/2",
        "Image 2/2",
    ]
    [progress] = faults.progress_messages(thread)
    final = faults.last_text(str(progress.response["ts"]), str(progress.args["text"]))
    assert "Done: 2 images" in final, final
    assert "already in its thread" in faults.mention(f"repost {job_id}")
    assert faults.shares(thread) == 2
