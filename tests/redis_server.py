"""A throwaway ``redis-server`` of one test: started on a free port, stopped and started
again on the same port (to play a Redis restart), with or without append-only persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis as redis_lib


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url`` (within half a second)."""
    try:
        return bool(redis_lib.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis_lib.RedisError:
        return False


class RedisServer:
    """``redis-server`` on 127.0.0.1 in ``workdir``. With ``persistent`` every write goes to
    an append-only file (fsync always), so a restart brings all keys back; without it a
    restart comes back empty, as a cache-configured Redis does."""

    def __init__(self, *, workdir: Path, persistent: bool) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.workdir = workdir
        self.persistent = persistent
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, persistent: bool | None = None, timeout: float = 10) -> RedisServer:
        """Start the server (again) on its port, with or without persistence from now on when
        ``persistent`` is given; returns once it answers. Started without persistence, it
        comes back empty whatever it had before."""
        if persistent is not None:
            self.persistent = persistent
        if self.persistent:
            persistence = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        else:
            persistence = ["--appendonly", "no", "--save", ""]
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server (SIGTERM: a clean shutdown that flushes the append-only file)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
