"""An aiohttp application served on 127.0.0.1 from an event loop in a thread of its own: the
platform fakes (Discord's REST API, Slack's Socket Mode) run on it while the code under test
runs in the test's thread or on its own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class ServedApp:
    """Serve ``app`` on a free port from :meth:`start` until :meth:`stop`."""

    def __init__(self, app: web.Application, *, name: str) -> None:
        self.app = app
        self.name = name
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> ServedApp:
        """Returns once the server listens (``port`` is then set)."""
        ready = threading.Event()

        def serve() -> None:
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(self._listen())
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=serve, name=self.name, daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run ``coro`` on the server's loop (from any other thread) and return its result."""
        assert self.loop is not None, "not started"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is None or self._runner is None:
            return
        self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _listen(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
