"""Acknowledgements never wait for work: Slack gets its 200 (HTTP) or its envelope ack (Socket
Mode) while the work of earlier requests is still running, however many there are, and a
burst of commands sent at once is acknowledged and answered in full, each command once."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import redis as redis_lib
from slack_sdk.signature import SignatureVerifier

from bot.adapters.slack import cli as slack_cli
from bot.adapters.slack.app import WORK_THREADS, Core
from bot.adapters.slack.cli import SlackRuntime
from bot.adapters.slack.settings import SlackSettings
from bot.ports import CommandEvent, ReactionEvent
from bot.service import BotService
from bot.settings import BotSettings
from engine.settings import Settings
from tests.bot.adapters.slack.conftest import SIGNING_SECRET, serve, wait_for
from tests.bot.adapters.slack.fake_slack import TEAM, FakeSlack
from tests.bot.adapters.slack.fake_socket import FakeSocketMode
from tests.bot.adapters.slack.slack_requests import mention, slash_envelope
from tests.bot.conftest import queued_jobs

BURST = 50  # what Slack may send at once to a team's bot
STUCK = 2 * WORK_THREADS  # more requests than threads to do their work


class Gate:
    """Holds work back, as a slow Web API or Redis would: the core it puts around the service
    (``core=gate.around``) waits in every call until :meth:`open`, and counts the calls."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.arrived = 0
        self._lock = threading.Lock()

    def around(self, service: BotService) -> Core:
        return _GatedCore(service, self)

    def open(self) -> None:
        self.opened.set()

    def wait(self) -> None:
        with self._lock:
            self.arrived += 1
        self.opened.wait(30)  # a test that forgets to open the gate fails, it does not hang


class _GatedCore:
    def __init__(self, service: BotService, gate: Gate) -> None:
        self.service = service
        self.gate = gate

    def handle_command(self, event: CommandEvent) -> str:
        self.gate.wait()
        return self.service.handle_command(event)

    def handle_reaction(self, event: ReactionEvent) -> None:
        self.gate.wait()
        self.service.handle_reaction(event)


def test_a_burst_of_commands_is_all_acknowledged_and_each_answered_once(
    make_slack, settings: Settings, redis: redis_lib.Redis
) -> None:
    slack = make_slack()

    with ThreadPoolExecutor(BURST) as senders:
        sent = list(
            senders.map(
                lambda k: slack.send.command(f"a lighthouse number {k} --n 1", user=f"U{k:03d}"),
                range(BURST),
            )
        )

    assert [s.status for s in sent] == [200] * BURST
    replies = wait_for(
        lambda: len(slack.fake.calls_to("response")) >= BURST and slack.fake.calls_to("response"),
        what="every answer",
    )
    assert len(replies) == BURST
    assert all(r.args["text"].startswith("Queued job") for r in replies)
    assert queued_jobs(settings, redis) == BURST


def test_connections_opened_before_the_server_accepts_any_are_queued_not_dropped(
    make_slack,
) -> None:
    slack = make_slack()
    service = serve(slack.runtime)
    host, port = "127.0.0.1", service.server.port
    connections = []
    try:
        # The socket listens but nothing accepts yet: the kernel completes a handshake only for
        # what fits in the listen backlog, and drops the SYNs of the rest (socketserver's
        # default backlog is 5).
        for _ in range(BURST):
            connection = http.client.HTTPConnection(host, port, timeout=5)
            connection.connect()
            connections.append(connection)
        service.start(pump=False)
        for k, connection in enumerate(connections):
            body = urlencode(
                {"team_id": TEAM, "channel_id": "CGENERAL", "user_id": f"U{k:03d}"}
                | {"command": "/imagine", "text": "help", "response_url": slack.fake.response_url}
            )
            connection.request("POST", "/slack/events", body=body, headers=signed(body))
        assert [c.getresponse().status for c in connections] == [200] * BURST
    finally:
        for connection in connections:
            connection.close()
        service.server.stop()  # the runtime is the fixture's: it stops it
        assert service.slack is not None
        service.slack.close()
    wait_for(lambda: len(slack.fake.calls_to("response")) == BURST, what="every answer")


def signed(body: str) -> dict[str, str]:
    """Slack's headers for ``body``, signed now."""
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


def test_requests_are_acknowledged_while_the_work_of_earlier_ones_is_stuck(make_slack) -> None:
    gate = Gate()
    slack = make_slack(core=gate.around)
    try:
        with ThreadPoolExecutor(STUCK) as senders:
            sent = list(
                senders.map(
                    lambda k: slack.send.command(f"a kite number {k} --n 1", user=f"U{k:03d}"),
                    range(STUCK),
                )
            )
        # Every command acknowledged though none has been answered: the work of the first
        # ones holds every work thread.
        assert [s.status for s in sent] == [200] * STUCK
        event = slack.send.event(mention(text="a red fox", user="UALICE", channel="CGENERAL"))
        assert event.status == 200
        assert not slack.fake.calls_to("response")
        wait_for(lambda: gate.arrived == WORK_THREADS, what="the work threads to be taken")
    finally:
        gate.open()
    replies = wait_for(
        lambda: len(slack.fake.calls_to("response")) >= STUCK and slack.fake.calls_to("response"),
        what="the answers once the work can go on",
    )
    assert all(r.args["text"].startswith("Queued job") for r in replies)
    wait_for(lambda: slack.fake.calls_to("chat.postEphemeral"), what="the mention's answer")


@pytest.fixture()
def socket_mode(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    server = FakeSocketMode().start()
    fake_slack.socket_url = server.url
    yield server
    server.stop()


def test_socket_mode_envelopes_are_acknowledged_while_work_is_stuck(
    fake_slack: FakeSlack,
    socket_mode: FakeSocketMode,
    socket_slack_settings: SlackSettings,
    settings: Settings,
    bot_settings: BotSettings,
    redis: redis_lib.Redis,
) -> None:
    gate = Gate()
    runtime = SlackRuntime(
        settings=settings,
        slack_settings=socket_slack_settings,
        bot_settings=bot_settings,
        redis=redis,
        socket_mode=True,
        core=gate.around,
    )
    handler = slack_cli.socket_mode_handler(runtime, slack_settings=socket_slack_settings)
    handler.connect()
    ids = [f"env-{k}" for k in range(STUCK)]
    try:
        socket_mode.wait_connected()
        for k, envelope_id in enumerate(ids):
            socket_mode.send(
                slash_envelope(
                    envelope_id,
                    user=f"U{k:03d}",
                    text=f"a kite number {k} --n 1",
                    response_url=fake_slack.response_url + f"commands/{k}",
                )
            )
        wait_for(lambda: all(socket_mode.acks(i) for i in ids), what="an ack of every envelope")
        assert not fake_slack.calls_to("response")  # acknowledged, none answered yet
    finally:
        gate.open()
    try:
        wait_for(
            lambda: len(fake_slack.calls_to("response")) >= STUCK,
            what="the answers once the work can go on",
        )
        assert queued_jobs(settings, redis) == STUCK
    finally:
        handler.close()
        runtime.stop()
