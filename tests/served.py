"""An event loop in a thread of its own, and an aiohttp application served on 127.0.0.1 from
one: the platform fakes (Discord's REST API, Slack's Socket Mode) run on it while the code
under test runs in the test's thread or on its own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running in a daemon thread; :meth:`run` waits for a coroutine."""

    def __init__(self, *, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the loop (from any other thread) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the loop and wait for it (code that creates tasks must run there)."""
        done = threading.Event()

        def wrapped() -> None:
            try:
                fn()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(wrapped)
        done.wait(10)

    def stop(self) -> None:
        """Stop the loop, wait for its thread and close it."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ServedApp:
    """Serve ``app`` on a free port from :meth:`start` until :meth:`stop`."""

    def __init__(self, app: web.Application, *, name: str) -> None:
        self.app = app
        self.name = name
        self.port = 0
        self._thread: LoopThread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> ServedApp:
        """Returns once the server listens (``port`` is then set)."""
        self._thread = LoopThread(name=self.name)
        self.run(self._listen())
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run ``coro`` on the server's loop (from any other thread) and return its result."""
        assert self._thread is not None, "not started"
        return self._thread.run(coro, timeout)

    def stop(self) -> None:
        if self._thread is None or self._runner is None:
            return
        self.run(self._runner.cleanup())
        self._thread.stop()
        self._thread = None

    async def _listen(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
