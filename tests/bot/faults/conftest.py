"""Harness of the fault tests: the real bot as a process (``proofroom slack`` in Socket Mode),
a real worker process, the real Redis; only Slack (Web API and Socket Mode) is faked, by the
recording local servers of the Slack adapter tests. A test can ``kill -9`` either process
and start it again, and script the fake to fail as a network does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from engine.settings import Settings
from tests.bot.adapters.slack.fake_slack import TEAM, FakeSlack
from tests.bot.adapters.slack.fake_socket import FakeSocketMode
from tests.bot.adapters.slack.slack_requests import mention
from tests.engine.jobs_fixtures import (
    WorkerProcess,
    isolated_settings,
    new_prefix,
    process_env,
    wipe,
)
from tests.waiting import wait_for

CHANNEL = "CGENERAL"
REQUESTER = "UALICE"
# Seconds a Web API call of the bot may take, unless a test says otherwise.
API_TIMEOUT_S = 10.0


class SocketServer(FakeSocketMode):
    """The Socket Mode fake, able to tell a new client's connection from an old one."""

    def client(self) -> object | None:
        """The connection of the client greeted last, while it is open."""
        socket = self._socket
        return socket if socket is not None and not socket.closed else None


class BotProcess:
    """``proofroom slack`` (Socket Mode) in a subprocess, on this test's Redis prefix."""

    def __init__(
        self,
        *,
        settings: Settings,
        fake: FakeSlack,
        socket: SocketServer,
        log_path: Path,
        api_timeout_s: float = API_TIMEOUT_S,
    ) -> None:
        self.fake = fake
        self.socket = socket
        self.log_path = log_path
        env = {
            **os.environ,
            **process_env(settings),
            "PROOFROOM_EXPORT_DIR": str(settings.data_dir / "approved"),
            "SLACK_BOT_TOKEN": fake.bot_token,
            "SLACK_APP_TOKEN": fake.app_token,
            "PROOFROOM_SLACK_API_URL": fake.api_url,
            "PROOFROOM_SLACK_UPDATE_INTERVAL_S": "0",
            "PROOFROOM_SLACK_SHARE_WAIT_S": "3",
            "PROOFROOM_SLACK_API_TIMEOUT_S": str(api_timeout_s),
        }
        earlier = socket.client()
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "slack"],
            cwd=log_path.parent,  # no .env of the developer's
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        def connected() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the bot exited early:\n{self.log_tail()}")
            # Connected once the fake greeted a client other than the one before (a killed
            # bot's socket may not look closed yet).
            return socket.client() not in (None, earlier)

        wait_for(connected, timeout=60, what="the bot to connect over Socket Mode")

    def kill(self) -> None:
        """``kill -9``: no cleanup, no acknowledgement of what it was doing."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) if it still runs, and close its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` of what the process printed (for a failing test's message)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Faults:
    """What a fault test drives: the fake Slack, the bot and worker processes."""

    def __init__(
        self,
        *,
        settings: Settings,
        redis: redis_lib.Redis,
        worker: WorkerProcess,
        tmp_path: Path,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.tmp_path = tmp_path
        self.fake = FakeSlack().start()
        self.socket = SocketServer()
        self.socket.start()
        self.fake.socket_url = self.socket.url
        self.bots: list[BotProcess] = []
        self.worker = worker

    def start_bot(self, *, api_timeout_s: float = API_TIMEOUT_S) -> BotProcess:
        """A new bot process, connected; the earlier ones must be dead."""
        bot = BotProcess(
            api_timeout_s=api_timeout_s,
            settings=self.settings,
            fake=self.fake,
            socket=self.socket,
            log_path=self.tmp_path / f"bot-{len(self.bots) + 1}.log",
        )
        self.bots.append(bot)
        return bot

    def imagine(self, text: str) -> str:
        """``@proofroom <text>`` in the channel; the id of the job it queued."""
        answer = self.mention(text)
        assert answer.startswith("Queued job `"), answer
        return answer.split("`")[1]

    def mention(self, text: str) -> str:
        """``@proofroom <text>`` in the channel (as ``/imagine <text>``); the bot's answer."""
        before = len(self.fake.calls_to("chat.postEphemeral"))
        payload = {
            "type": "event_callback",
            "team_id": TEAM,
            "event_id": f"Ev{uuid.uuid4().hex[:10]}",
            "event": mention(text=text, user=REQUESTER, channel=CHANNEL),
        }
        self.socket.send(envelope(payload))
        reply = wait_for(
            lambda: self.fake.calls_to("chat.postEphemeral")[before:], what="the bot's answer"
        )[0]
        return str(reply.args["text"])

    def thread_of(self, job_id: str) -> str:
        """The ts of the job card (the thread's root) that names ``job_id``."""
        card = wait_for(
            lambda: [
                c
                for c in self.fake.calls_to("chat.postMessage")
                if job_id in str(c.args.get("text")) and "thread_ts" not in c.args and c.response
            ],
            what=f"the card of job {job_id}",
        )
        return str(card[0].response["ts"])  # type: ignore[index]

    def shares(self, thread: str) -> int:
        """Files shared into ``thread``, whether or not the bot ever looked them up: what
        people see there."""
        return sum(
            1
            for upload in list(self.fake.uploads.values())
            if upload["shares"] and upload.get("thread_ts") == thread
        )

    def progress_messages(self, thread: str) -> list[Any]:
        """The progress messages posted in ``thread`` (answered calls only)."""
        return [
            c
            for c in self.fake.calls_to("chat.postMessage")
            if c.args.get("thread_ts") == thread and c.response and c.response.get("ok")
        ]

    def last_text(self, message_ts: str, posted: str) -> str:
        """What the message ``message_ts`` says after its last successful edit."""
        edits = [
            c
            for c in self.fake.calls_to("chat.update")
            if c.args.get("ts") == message_ts and c.response and c.response.get("ok")
        ]
        return str(edits[-1].args["text"]) if edits else posted

    def logs(self) -> str:
        """The tails of every bot's log and the worker's."""
        return "\n".join(
            [f"--- {b.log_path.name}\n{b.log_tail()}" for b in self.bots]
            + [f"--- worker\n{self.worker.log_tail()}"]
        )

    def close(self) -> None:
        """Stop the bots and the fakes; the shared worker runs on (resumed if paused)."""
        for bot in self.bots:
            bot.stop()
        if self.worker.proc.poll() is None:
            self.worker.signal(signal.SIGCONT)  # a test that paused it may have failed
        self.socket.stop()
        self.fake.stop()


def envelope(payload: dict[str, Any]) -> dict[str, Any]:
    """An Events API envelope as Slack pushes it over the socket."""
    return {
        "envelope_id": f"env-{uuid.uuid4().hex[:8]}",
        "type": "events_api",
        "payload": payload,
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
    }


@pytest.fixture(scope="package")
def fault_settings(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, redis_lib.Redis]]:
    """Settings of these tests (their own key prefix and data folder) and a client on the
    real Redis; their keys are deleted at the end."""
    root = tmp_path_factory.mktemp("faults")
    settings = isolated_settings(
        prefix=new_prefix(),
        redis_url=redis_url,
        data_dir=root / "data",
        model_dir=root / "models",
        embedding_dir=root / "embeddings",
        vae_dir=root / "vaes",
    )
    client = redis_lib.Redis.from_url(redis_url)
    try:
        yield settings, client
    finally:
        wipe(client, settings.key_prefix)
        client.close()


@pytest.fixture(scope="package")
def stack(
    fault_settings: tuple[Settings, redis_lib.Redis],
) -> Iterator[tuple[Settings, redis_lib.Redis, WorkerProcess]]:
    """``fault_settings`` and one worker process for all these tests: it takes seconds to
    warm up."""
    settings, client = fault_settings
    worker = WorkerProcess(settings, log_path=settings.data_dir.parent / "worker.log")
    try:
        yield settings, client, worker
    finally:
        worker.stop()


@pytest.fixture()
def faults(
    stack: tuple[Settings, redis_lib.Redis, WorkerProcess], tmp_path: Path
) -> Iterator[Faults]:
    """The fakes of this test, and the shared worker; bots are started by the test."""
    settings, client, worker = stack
    made = Faults(settings=settings, redis=client, worker=worker, tmp_path=tmp_path)
    try:
        yield made
    finally:
        made.close()


def wait_ready(faults: Faults) -> None:
    """Wait for the shared worker to be warm (at once after the first test)."""
    faults.worker.wait_ready(faults.redis, timeout=120)


def until(predicate: Callable[[], Any], *, faults: Faults, what: str, timeout: float = 90) -> Any:
    """:func:`wait_for` that shows the processes' logs when it times out."""
    try:
        return wait_for(predicate, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{faults.logs()}") from None


def both_images_once(faults: Faults, fake: FakeSlack, thread: str) -> None:
    """Wait for a job's two images in ``thread``, then check that each was shared once, in
    order (after a pause long enough for a stray repeat to show)."""
    until(
        lambda: len(fake.shared_files(thread=thread)) >= 2,
        faults=faults,
        what="both images in the thread",
    )
    time.sleep(1.5)  # time for a stray repeat to show
    assert faults.shares(thread) == 2, faults.logs()
    images = fake.shared_files(thread=thread)
    assert [i["initial_comment"].split(" \u00b7 ")[0] for i in images] == [
        "Image 1/2",
        "Image 2/2",
    ], faults.logs()


__all__ = [
    "both_images_once",
    "CHANNEL",
    "REQUESTER",
    "Faults",
    "faults",
    "fault_settings",
    "stack",
    "until",
    "wait_ready",
]
