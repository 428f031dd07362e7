"""``proofroom serve`` as deployed, in a process of its own on the real Redis: ``/healthz``,
``/readyz`` (503 until a real worker process is alive) and ``/metrics`` answer; a burst of 50
signed slash commands sent at once is all accepted (no connection error), acknowledged and
answered, also when SIGTERM arrives right after; the worker's own metrics port shows how long
the render took. ``proofroom slack --http`` is the same service."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis as redis_lib

from engine.queue import JobQueue, queue_name
from engine.settings import Settings
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.adapters.slack.slack_requests import Sent, SlackSender
from tests.bot.conftest import queued_jobs
from tests.bot.serve.conftest import SIGNING_SECRET, get, samples
from tests.engine.jobs_fixtures import WorkerProcess, tiny_spec, wait_terminal
from tests.waiting import wait_for

BURST = 50  # what Slack may send at once to a team's bot
WORKER_METRICS = r"worker metrics on http://[^:]+:(\d+)/metrics"


@pytest.mark.slow
def test_health_readiness_and_metrics_follow_a_job_through_a_real_worker(
    run_serve, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis, tmp_path: Path
) -> None:
    serve = run_serve(fake=fake_slack)

    health = get(serve.url + "/healthz")
    assert (health.status, health.body) == (200, "ok")

    queue = JobQueue(redis=redis, settings=settings)
    job_id = queue.enqueue(tiny_spec())
    waiting = queue_name(settings, "interactive", queue.catalog.model("tiny").pool)

    ready = get(serve.url + "/readyz")
    assert ready.status == 503
    assert ready.json()["redis"] == "ok"
    assert ready.json()["live_workers"] == []
    assert "sd15" in ready.json()["pools_without_worker"]
    assert any("no live worker" in line for line in ready.json()["missing"])

    metrics = samples(get(serve.url + "/metrics").body)
    assert metrics[("proofroom_redis_up", ())] == 1
    assert metrics[("proofroom_queue_depth", _labels(queue=waiting))] == 1
    assert metrics[("proofroom_workers_live", ())] == 0
    assert metrics[("proofroom_jobs_total", (("outcome", "done"),))] == 0

    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log", args=["--metrics-port", "0"])
    try:
        assert wait_terminal(queue.events, job_id, timeout=120).kind == "done"
        # Ready from the worker's first heartbeat; its pools from the first beat after it
        # registered with RQ.
        ready = wait_for(
            lambda: (
                (answer := get(serve.url + "/readyz")).json()["workers_by_pool"]["sd15"] and answer
            ),
            what="/readyz to see the worker serve sd15",
        )
        assert ready.status == 200
        assert ready.json()["live_workers"] == [worker.name]
        assert "sd15" not in ready.json()["pools_without_worker"]

        metrics = samples(get(serve.url + "/metrics").body)
        assert metrics[("proofroom_queue_depth", _labels(queue=waiting))] == 0
        assert metrics[("proofroom_workers_live", ())] == 1
        assert metrics[("proofroom_pool_workers_live", (("pool", "sd15"),))] == 1
        assert metrics[("proofroom_jobs_total", (("outcome", "done"),))] == 1
        # The bot's group reads the job's events (origin "test": nothing to post, acked).
        wait_for(
            lambda: (
                samples(get(serve.url + "/metrics").body).get(
                    ("proofroom_event_stream_lag", (("group", "bot-slack"),))
                )
                == 0
            ),
            what="the Slack bot's group to read every job event",
        )

        port = int(wait_for(lambda: _search(WORKER_METRICS, worker.log_tail(200)), what="port"))
        rendered = samples(get(f"http://127.0.0.1:{port}/metrics").body)
        assert rendered[("proofroom_render_seconds_count", (("model", "tiny"),))] == 1
        assert rendered[("proofroom_render_seconds_sum", (("model", "tiny"),))] > 0
    finally:
        worker.stop()
    assert serve.terminate() == 0


def test_fifty_signed_slash_commands_at_once_are_all_accepted_and_answered_despite_sigterm(
    run_serve, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    serve = run_serve(fake=fake_slack)
    sender = SlackSender(
        url=serve.url + "/slack/events",
        signing_secret=SIGNING_SECRET,
        response_url=fake_slack.response_url,
    )
    start = threading.Barrier(BURST)

    def send(k: int) -> Sent | BaseException:
        start.wait(10)  # every connection opened at the same moment
        try:
            return sender.command(f"a lighthouse number {k} --n 1", user=f"U{k:03d}")
        except Exception as exc:  # a reset or refused connection, a timeout
            return exc

    with ThreadPoolExecutor(BURST) as senders:
        sent = list(senders.map(send, range(BURST)))
    # Stopped as soon as the last ack is in: the commands' work is still running.
    assert serve.terminate() == 0, serve.log()

    errors = [s for s in sent if isinstance(s, BaseException)]
    assert errors == []
    assert [s.status for s in sent if isinstance(s, Sent)] == [200] * BURST
    # Stopping finished the work of every acknowledged command first.
    replies = fake_slack.calls_to("response")
    assert len(replies) == BURST
    assert all(r.args["text"].startswith("Queued job") for r in replies)
    assert queued_jobs(settings, redis) == BURST


def test_slack_http_mode_of_proofroom_slack_is_the_same_service(
    run_serve, fake_slack: FakeSlack
) -> None:
    serve = run_serve("slack", "--http", "--host", "127.0.0.1", "--port", "0", fake=fake_slack)
    assert get(serve.url + "/healthz").status == 200
    sender = SlackSender(
        url=serve.url + "/slack/events",
        signing_secret=SIGNING_SECRET,
        response_url=fake_slack.response_url,
    )
    assert sender.command("help").status == 200
    assert sender.command("help", signature="v0=" + "0" * 64).status == 401
    wait_for(lambda: fake_slack.calls_to("response"), what="the answer to /imagine help")
    assert serve.terminate() == 0


def test_serve_without_slack_answers_health_and_refuses_the_slack_path(run_serve) -> None:
    serve = run_serve()
    assert get(serve.url + "/healthz").status == 200
    assert "Slack HTTP mode off" in serve.log()
    sender = SlackSender(
        url=serve.url + "/slack/events", signing_secret=SIGNING_SECRET, response_url=""
    )
    assert sender.command("help").status == 404
    assert serve.terminate() == 0


def _labels(**labels: str) -> tuple[tuple[str, str], ...]:
    """A queue depth's labels: the queue, and its priority and pool."""
    queue = labels["queue"]
    *_, priority, pool = queue.rsplit("-", 2)
    return tuple(sorted({"queue": queue, "priority": priority, "pool": pool}.items()))


def _search(pattern: str, text: str) -> str | None:
    found = re.search(pattern, text)
    return found.group(1) if found else None
