"""A real S3-compatible server for tests: moto's server mode (``python -m moto.server``) in a
subprocess on a free port. The stores talk to it over HTTP with boto3, as they talk to AWS,
MinIO or R2; nothing in the client is replaced.

``PROOFROOM_TEST_S3_ENDPOINT`` runs the same tests against another server instead (a MinIO
you started, with its credentials in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.redis_server import free_port

# What boto3 reads from the environment, set for the server's lifetime (moto takes any keys).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "proofroom-test",
    "AWS_SECRET_ACCESS_KEY": "proofroom-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    """``moto.server`` on 127.0.0.1, logging into ``workdir``."""

    def __init__(self, *, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60) -> S3Server:
        """Start the server; return once it accepts connections."""
        log = (self.workdir / "moto.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not listen within {timeout:.0f} s")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Stop the server (its buckets go with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        """The end of the server's log."""
        path = self.workdir / "moto.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
