"""A ``redis-server`` of one data folder: the embedded default's state on disk.

The chat processes (``proofroom slack``, ``discord``, ``shell``) without ``REDIS_URL`` start
one when a ``redis-server`` binary is at hand, so threads, votes and the ledger survive a
restart. It keeps an append-only file under ``<data_dir>/redis`` and listens only on a unix
socket there (``--port 0``, mode 700): no TCP port to collide with, nothing reachable from
the network or by other users.

Several chat processes may share one data folder (``proofroom slack`` and ``proofroom
discord`` on one box): the first starts the server, the next ones use it, and the last one
to leave stops it. Each process names itself in a hash on the server (``USERS_KEY``); a
process that died without leaving is pruned by its pid (the socket is local, so are the
pids). Starting and leaving hold a lock file, so a process never connects to a server that
another one is stopping. After a crash (``kill -9``) the stale socket and pid file are
cleared and a new server starts on the same append-only file.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.redis_values import as_text

log = logging.getLogger(__name__)

# Who uses the server: "pid:token" -> when it came (a hash on the server itself).
USERS_KEY = "proofroom:private-redis:users"
# A unix socket path longer than this does not fit ``sockaddr_un`` on every system.
_MAX_SOCKET_PATH = 100
_LOG_TAIL_LINES = 12


class PrivateRedisError(RuntimeError):
    """The private server could not start or be reached; the message says what to do."""


def is_off(setting: str) -> bool:
    """Whether ``PROOFROOM_REDIS_SERVER`` asks for the in-memory store."""
    return setting.strip().lower() in ("", "off", "none", "memory")


def find_binary(setting: str) -> str | None:
    """The ``redis-server`` to run for ``PROOFROOM_REDIS_SERVER``: ``off`` (or empty) is
    None; a bare name is looked up on ``PATH`` (None when absent); a path must be an
    executable file, else :class:`PrivateRedisError` (a typo must not quietly cost the
    state of every restart)."""
    value = setting.strip()
    if is_off(value):
        return None
    if os.sep not in value and (os.altsep is None or os.altsep not in value):
        return shutil.which(value)
    path = Path(value).expanduser()
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    raise PrivateRedisError(
        f"PROOFROOM_REDIS_SERVER={value} is not an executable redis-server; fix the path, "
        "or set it to off to keep the state in memory (nothing then survives a restart)"
    )


class PrivateRedis:
    """The server of ``folder``: :meth:`open` starts it, or joins the one already serving
    the folder, and returns a client; :meth:`close` leaves, and stops the server when no
    other process uses it."""

    def __init__(self, *, binary: str, folder: Path, start_timeout_s: float = 60.0) -> None:
        self.binary = binary
        self.folder = folder.resolve()
        self.start_timeout_s = start_timeout_s
        self.socket_path = socket_path_for(self.folder)
        self.pidfile = self.folder / "redis-server.pid"
        self.logfile = self.folder / "redis-server.log"
        self.lockfile = self.folder / "lock"
        self.client: redis_lib.Redis | None = None
        self.pid: int | None = None  # the server's
        self.started = False  # whether this process started it
        self._proc: subprocess.Popen[bytes] | None = None
        self._me = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"  # pid first: pruned by it

    def open(self) -> redis_lib.Redis:
        """Start or join the folder's server; returns a client on its socket."""
        if self.client is not None:
            return self.client
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.folder.chmod(0o700)  # the append-only file holds every thread and vote
            self.lockfile.touch()
        except OSError as exc:
            raise PrivateRedisError(
                f"cannot use {self.folder} for the private redis-server ({exc.strerror}); "
                "give this user the data folder (PROOFROOM_DATA_DIR), or set REDIS_URL"
            ) from exc
        with self._locked():
            if not self._answers():
                self._clear_stale()
                if not self._answers():
                    self._start()
            client = redis_lib.Redis(unix_socket_path=str(self.socket_path))
            client.hset(USERS_KEY, self._me, str(time.time()))
            self.pid = int(client.info("server")["process_id"])
        self.client = client
        atexit.register(self.close)  # an exception or sys.exit must not orphan the server
        return client

    def close(self, timeout_s: float = 30.0) -> None:
        """Leave the server; stop it (a clean shutdown: the append-only file is flushed)
        when no other live process uses it. Safe to call twice."""
        client, self.client = self.client, None
        if client is None:
            return
        atexit.unregister(self.close)
        try:
            with self._locked():
                others = self._leave()
                if others:
                    log.info(
                        "redis-server of %s keeps running for %d other user(s)",
                        self.folder,
                        len(others),
                    )
                    return
                self._shutdown(timeout_s=timeout_s)
        except redis_lib.RedisError as exc:  # gone already (stopped by hand, crashed)
            log.warning("could not stop the redis-server of %s: %s", self.folder, exc)
        finally:
            client.close()
            self._proc = None

    # -- starting -------------------------------------------------------------------------

    def _start(self) -> None:
        """Run ``redis-server`` on the folder and wait until it answers (its append-only
        file loaded)."""
        command = [
            self.binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.folder),
            "--pidfile", str(self.pidfile),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        with self.logfile.open("wb") as output:
            try:
                # A session of its own: Ctrl-C in the terminal stops the chat process, which
                # then stops the server, rather than killing it under the bot's feet.
                self._proc = subprocess.Popen(
                    command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
                )
            except OSError as exc:
                raise PrivateRedisError(
                    f"cannot run {self.binary} ({exc.strerror}); set PROOFROOM_REDIS_SERVER "
                    "to a working redis-server, or to off to keep the state in memory"
                ) from exc
        deadline = time.monotonic() + self.start_timeout_s
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._kill_own()
                why = "exited" if self._proc.returncode else "did not answer in time"
                raise PrivateRedisError(
                    f"the private redis-server for {self.folder} {why}; its log ends with:\n"
                    f"{self._log_tail()}\n"
                    "fix that, set REDIS_URL to a running Redis, or set "
                    "PROOFROOM_REDIS_SERVER=off to keep the state in memory"
                )
            time.sleep(0.02)
        self.started = True

    def _clear_stale(self) -> None:
        """Remove the socket and pid file a crashed server left; refuse when a live
        redis-server still holds the folder without answering (two servers on one
        append-only file would corrupt it)."""
        pid = _read_pid(self.pidfile)
        if pid is not None and _is_redis_process(pid):
            deadline = time.monotonic() + self.start_timeout_s
            while time.monotonic() < deadline:  # an orphan still loading its file, maybe
                if self._answers() or not _is_redis_process(pid):
                    break
                time.sleep(0.1)
            else:
                raise PrivateRedisError(
                    f"a redis-server (pid {pid}) holds {self.folder} but does not answer; "
                    f"stop it (kill {pid}) and start again"
                )
            if self._answers():
                return
        for stale in (self.socket_path, self.pidfile):
            stale.unlink(missing_ok=True)

    def _answers(self) -> bool:
        """Whether a server answers PING on the socket now (loading counts as no)."""
        if not self.socket_path.exists():
            return False
        probe = self._probe()
        try:
            return bool(probe.ping())
        except (redis_lib.RedisError, OSError):
            return False
        finally:
            probe.close()

    def _probe(self, *, timeout_s: float = 2.0) -> redis_lib.Redis:
        """A client that fails at once rather than retrying (redis-py's default takes
        seconds on a socket nobody listens on)."""
        return redis_lib.Redis(
            unix_socket_path=str(self.socket_path),
            socket_connect_timeout=0.5,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    # -- leaving --------------------------------------------------------------------------

    def _leave(self) -> list[str]:
        """Take this process off the users; the live processes still on it."""
        client = self._probe()  # no retries: a server already gone is said at once
        try:
            client.hdel(USERS_KEY, self._me)
            others = []
            for raw in client.hkeys(USERS_KEY):
                user = as_text(raw)
                pid = user.partition(":")[0]
                if pid.isdigit() and _alive(int(pid)):
                    others.append(user)
                else:
                    client.hdel(USERS_KEY, user)  # died without leaving
            return others
        finally:
            client.close()

    def _shutdown(self, *, timeout_s: float) -> None:
        """SHUTDOWN (flushes the append-only file), then wait for the process to end."""
        # A client of its own without retries: the connection dropping is the answer.
        probe = self._probe(timeout_s=timeout_s)
        try:
            probe.shutdown()
        finally:
            probe.close()
        pid, deadline = self.pid, time.monotonic() + timeout_s
        while pid is not None and _alive(pid):
            if self._proc is not None:
                self._proc.poll()  # reap our child, or it lingers as a zombie
            if time.monotonic() > deadline:
                log.warning("redis-server (pid %d) ignored SHUTDOWN; killing it", pid)
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        if self._proc is not None:
            self._proc.wait(timeout=5)
        log.info("redis-server of %s stopped", self.folder)

    def _kill_own(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "  (no log)"
        return "\n".join(f"  {line}" for line in lines[-_LOG_TAIL_LINES:]) or "  (empty log)"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the folder's lock file: one process at a time starts, joins or stops."""
        import fcntl  # noqa: PLC0415 (POSIX only, as redis-server is)

        with self.lockfile.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def socket_path_for(folder: Path) -> Path:
    """``folder/redis.sock``, or, when that path is too long for a unix socket, one in a
    private folder of the temp dir named after ``folder`` (the same for every process)."""
    folder = folder.resolve()  # relative or not, one folder has one socket
    path = folder / "redis.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(folder)).hexdigest()[:16]
    private = Path(tempfile.gettempdir()) / f"proofroom-redis-{os.getuid()}-{digest}"
    private.mkdir(mode=0o700, exist_ok=True)
    if private.stat().st_uid != os.getuid():  # someone else's folder: not ours to use
        raise PrivateRedisError(f"{private} belongs to another user; remove it")
    private.chmod(0o700)
    return private / "redis.sock"


def _read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS), or it ended just now: kill(0) said alive
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_redis_process(pid: int) -> bool:
    """Whether ``pid`` runs redis-server. Where ``/proc`` cannot tell (macOS), whether it
    lives at all: a stale pid file's pid may belong to anything after a reboot, but
    waiting for it and then refusing is safer than two servers on one file."""
    if not _alive(pid):
        return False
    try:
        return b"redis" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc").is_dir()
