"""Serving the ASGI application with uvicorn: in the main thread until SIGINT or SIGTERM
(``proofroom serve``), or in a thread of its own (tests, ``bench/ack.py``'s in-process use).

The socket is bound and listening when the :class:`HttpServer` is made, with a backlog of
``LISTEN_BACKLOG``: connections that arrive before the loop runs, or faster than it accepts
them, wait in the kernel instead of being refused (a refused SYN is retried by the client
only after 1 s, 3 s, 7 s). One event loop reads every request; what blocks runs on threads
(``bot.serve.slack``, and Starlette's pool for ``/readyz`` and ``/metrics``).

Stopping: uvicorn stops accepting, lets the requests in flight finish (at most
``GRACEFUL_S``) and returns; the caller then finishes the work those requests started
(``SlackRuntime.stop``). The signal is not raised again afterwards, as uvicorn does by
default: a re-raised SIGTERM would end the process before that work is done.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)

# Connections the kernel queues before they are accepted: above any burst Slack sends (the
# kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1024
# How long a stop waits for requests in flight.
GRACEFUL_S = 10.0
# A client that opened a connection and sends nothing more for this long is closed.
KEEP_ALIVE_S = 5


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own re-raises the signal once the server has stopped (see the docstring).
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class HttpServer:
    """``app`` on ``host:port`` (port 0: a free one, see :attr:`port`)."""

    def __init__(self, app: ASGIApp, *, host: str, port: int) -> None:
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(
            app,
            backlog=LISTEN_BACKLOG,
            lifespan="off",
            log_config=None,  # the process's logging (engine.logs) as configured
            access_log=False,  # a line per Slack request belongs nowhere
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=int(GRACEFUL_S),
        )
        self.server = _Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` as bound (no path)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` or, in the main thread, SIGINT/SIGTERM;
        returns once the requests in flight were answered."""
        self.server.run(sockets=[self.socket])

    def start(self, timeout: float = 30.0) -> HttpServer:
        """Serve in a daemon thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (requests in flight are answered first) and close the socket."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACEFUL_S + 5)
        self.socket.close()
