"""Slack's Socket Mode server, faked: a real WebSocket server on 127.0.0.1.

``apps.connections.open`` on :class:`~tests.bot.adapters.slack.fake_slack.FakeSlack` answers with
:attr:`FakeSocketMode.url`; slack_sdk's own client connects to it as it connects to Slack
(its built-in client speaks plain ``ws://`` to any port but 443, for tests like this one).
The fake greets with ``hello``, pushes envelopes a test hands it (:meth:`send`), and records
what the app answers: one acknowledgement per envelope, ``{"envelope_id": ...}``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from aiohttp import WSMsgType, web

from tests.served import ServedApp


class FakeSocketMode:
    """Start with :meth:`start`, stop with :meth:`stop`; one client at a time."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._socket: web.WebSocketResponse | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._served = ServedApp(app, name="fake-socket-mode")

    def start(self) -> FakeSocketMode:
        self._served.start()
        return self

    def stop(self) -> None:
        self._served.stop()

    @property
    def url(self) -> str:
        """What ``apps.connections.open`` answers."""
        return f"ws://127.0.0.1:{self._served.port}/link/?ticket=test-ticket"

    def wait_connected(self, timeout: float = 10) -> None:
        if not self._connected.wait(timeout):
            raise AssertionError("the Socket Mode client did not connect")

    def send(self, envelope: dict[str, Any]) -> None:
        """Push one envelope to the connected client, as Slack does."""
        assert self._socket is not None, "no client connected"
        self._served.run(self._socket.send_str(json.dumps(envelope)))

    def acks(self, envelope_id: str) -> list[dict[str, Any]]:
        """The client's answers to envelope ``envelope_id``."""
        with self._lock:
            return [m for m in self.received if m.get("envelope_id") == envelope_id]

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._socket = socket
        await socket.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "connection_info": {"app_id": "A0TEST"},
                    "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                }
            )
        )
        self._connected.set()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                with self._lock:
                    self.received.append(json.loads(message.data))
        return socket
