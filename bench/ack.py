"""How long Slack waits for the bot's acknowledgement of ``/imagine`` when 50 arrive at once.

    python bench/ack.py                         # REDIS_URL or 127.0.0.1:6379
    python bench/ack.py --quick --redis-url redis://host:6379/0

Slack shows the user an error when a slash command is not acknowledged within 3 s, and a
connection the server never accepts costs a 1 s SYN retransmit, so the goal here is an ack
p99 under 100 ms with no errors at 50 concurrent. What runs, both in each round:

- HTTP mode: ``proofroom slack --http`` (the ASGI service of ``proofroom serve``: uvicorn reads
  the requests, a pool of threads dispatches them to Bolt) in a process of its own
  (``python -m bot.cli``), with
  the Web API pointed at a local recording fake (``tests/bot/adapters/slack/fake_slack.py``,
  in a process of its own: answering the bot takes no time from the process that measures)
  and no worker: jobs only queue, on a real Redis, under a key prefix of the run. 50
  ``/imagine`` slash commands, form-encoded and signed as Slack signs them
  (``X-Slack-Signature`` v0 HMAC-SHA256 of ``v0:{timestamp}:{body}``,
  ``X-Slack-Request-Timestamp``), are sent at once, each on its own connection from one event
  loop. Latency: from opening the connection to the whole response read. Errors: a reset or
  refused connection, a timeout (10 s), a status other than 200.
- Socket Mode: ``proofroom slack`` (Socket Mode, slack_sdk's built-in client as deployed)
  connected to a local WebSocket server that stands in for Slack's
  (``apps.connections.open`` on the fake answers its URL). 50 ``slash_commands`` envelopes
  are pushed back to back on the one socket, as Slack does; latency is from pushing an
  envelope to receiving its ``{"envelope_id": ...}`` acknowledgement. Errors: envelopes not
  acknowledged within 10 s.

Rounds alternate the two modes (HTTP, socket, HTTP, ...) so that a busy machine slows both
alike; each round waits until the bot has answered every command of the previous one (its
``respond()`` calls reach the fake), so that a round starts idle; one untimed round warms up.
Every command is checked to have been answered "Queued job"; the Redis keys of the run are
deleted at the end. ``--baseline DIR`` (``measure(baseline=...)``) runs the bots of another
checkout too (e.g. ``git archive HEAD | tar -x -C /tmp/before``), interleaved round by round
with this one's: an A/B on the same machine at the same time.

``measure(quick=..., redis_url=..., baseline=None)`` returns (times in milliseconds; with a
baseline, every ``http_*``/``socket_*`` key and ``meets_goal`` again as ``baseline_*``, and
``baseline``, its path)::

    what                 str    one line: what was measured
    concurrency          int    requests per burst (50)
    rounds               int    timed bursts per mode (5; quick: 2)
    goal_p99_ms          float  100.0
    http_requests        int    slash commands sent over HTTP, all timed rounds
    http_p50_ms          float  median time to the HTTP 200 (None if none came)
    http_p99_ms          float  99th percentile (inclusive method)
    http_max_ms          float
    http_errors          int    requests without a 200: resets, refusals, 10 s timeouts, others
    http_error_kinds     str    e.g. "ConnectionResetError x3" ("" when none)
    http_answered        int    commands whose "Queued job" answer reached the fake
    socket_requests      int    envelopes pushed, all timed rounds
    socket_p50_ms        float  median time to the envelope's ack
    socket_p99_ms        float
    socket_max_ms        float
    socket_errors        int    envelopes not acknowledged within 10 s
    socket_error_kinds   str
    socket_answered      int
    meets_goal           bool   both modes: p99 under the goal and no errors
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis as redis_lib  # noqa: E402
from aiohttp import WSMsgType, web  # noqa: E402
from slack_sdk.signature import SignatureVerifier  # noqa: E402

from bench.common import add_redis_url  # noqa: E402
from engine.settings import REPO_ROOT  # noqa: E402
from tests.bot.adapters.slack.fake_slack import TEAM, FakeSlack  # noqa: E402
from tests.engine.jobs_fixtures import MODEL_CACHE, new_prefix, wipe  # noqa: E402
from tests.served import ServedApp  # noqa: E402

CONCURRENCY = 50
GOAL_P99_S = 0.100
TIMEOUT_S = 10.0  # a request or envelope unanswered this long counts as an error
SIGNING_SECRET = "bench-signing-secret"
HTTP_PATH = "/slack/events"
APP_ID = "A0BENCH"
PROMPT = "a lighthouse at dusk, oil painting"


# ---- Slack's Web API and the bot under test -------------------------------------------------
class FakeWebApi:
    """The recording fake of the Web API (``tests/bot/adapters/slack/fake_slack.py``) in a
    process of its own, so that answering the bot's calls takes no time from the process that
    measures; ``apps.connections.open`` answers ``socket_url``."""

    def __init__(self, *, socket_url: str | None = None) -> None:
        code = "import sys; from bench.ack import serve_fake_api; serve_fake_api(sys.argv[1])"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, socket_url or ""],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = json.loads(self._ask(None))
        self.api_url: str = hello["api_url"]
        self.response_url: str = hello["response_url"]
        self.bot_token: str = hello["bot_token"]
        self.app_token: str = hello["app_token"]

    def _ask(self, line: str | None) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if line is not None:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        answer = self._proc.stdout.readline()
        if not answer:
            raise RuntimeError("the fake Slack Web API process exited")
        return answer

    def replies(self) -> tuple[int, int]:
        """How many answers reached the response_url, and how many of them said "Queued job"."""
        answered, queued = json.loads(self._ask("count"))
        return int(answered), int(queued)

    def wait_answered(self, *, total: int, timeout: float = 30) -> int:
        """Wait until ``total`` answers arrived (``timeout`` at most); how many did."""
        deadline = time.monotonic() + timeout
        while True:
            answered = self.replies()[0]
            if answered >= total or time.monotonic() > deadline:
                return answered
            time.sleep(0.02)

    def stop(self) -> None:
        """End the process (it stops when its stdin closes)."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def serve_fake_api(socket_url: str) -> None:
    """The fake's process (:class:`FakeWebApi`): its URLs as one JSON line, then per line
    ``count`` on stdin, ``[answered, queued]`` on stdout, until stdin closes."""
    # Slack's API takes any number of connections; http.server's backlog of 5 would make the
    # bot's work (not its acks) wait for SYN retransmits. This process is the fake's alone.
    ThreadingHTTPServer.request_queue_size = 128
    fake = FakeSlack(socket_url=socket_url or None).start()
    urls = {"api_url": fake.api_url, "response_url": fake.response_url}
    print(json.dumps(urls | {"bot_token": fake.bot_token, "app_token": fake.app_token}))
    sys.stdout.flush()
    for _ in sys.stdin:
        texts = [str(call.args.get("text", "")) for call in fake.calls_to("response")]
        print(json.dumps([len(texts), sum(text.startswith("Queued job") for text in texts)]))
        sys.stdout.flush()
    fake.stop()


class SlackBot:
    """``proofroom slack`` (``--http`` or Socket Mode) of the checkout at ``root`` in a process of
    its own, against the fake Web API, on Redis under ``prefix`` with no worker; its log goes
    to ``workdir``."""

    def __init__(
        self,
        *,
        fake: FakeWebApi,
        redis_url: str,
        prefix: str,
        workdir: Path,
        http: bool,
        root: Path = REPO_ROOT,
    ) -> None:
        self.http = http
        self.port = _free_port() if http else 0
        self.log_path = workdir / f"slack-{'http' if http else 'socket'}-{self.port}-{id(self)}.log"
        (workdir / "calendars").mkdir(exist_ok=True)  # no calendar posts
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PROOFROOM_"))}
        env |= {
            "REDIS_URL": redis_url,  # set: no embedded worker, jobs only queue
            "PROOFROOM_KEY_PREFIX": prefix,
            "PROOFROOM_DATA_DIR": str(workdir / "data"),
            "PROOFROOM_LORA_DIR": str(workdir / "data" / "loras"),
            "PROOFROOM_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "PROOFROOM_TEMPLATES_DIR": str(root / "templates"),
            "PROOFROOM_CALENDARS_DIR": str(workdir / "calendars"),
            "PROOFROOM_SLACK_API_URL": fake.api_url,
            "SLACK_BOT_TOKEN": fake.bot_token,
            "PYTHONPATH": str(root),  # ahead of the editable install: that checkout's code
            "HF_HUB_OFFLINE": "1",
        }
        argv = [sys.executable, "-m", "bot.cli", "slack"]
        if http:
            env["SLACK_SIGNING_SECRET"] = SIGNING_SECRET
            argv += ["--http", "--host", "127.0.0.1", "--port", str(self.port)]
        else:
            env["SLACK_APP_TOKEN"] = fake.app_token
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        """The bot's process id."""
        return self.proc.pid

    def wait_listening(self, timeout: float = 30) -> None:
        """HTTP mode: wait until the bot says it serves (after its ``auth.test``)."""
        deadline = time.monotonic() + timeout
        while "Slack HTTP mode on" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proofroom slack --http did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the bot's log, for error messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Ctrl-C, as an operator stops it; killed if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---- Slack's side: signed HTTP requests, Socket Mode envelopes --------------------------------
def command_fields(*, user: str, response_url: str) -> dict[str, str]:
    """A ``/imagine`` slash command's fields, as Slack sends them."""
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "team_domain": "bench",
        "channel_id": "CBENCH",
        "channel_name": "bench",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/imagine",
        "text": PROMPT,
        "api_app_id": APP_ID,
        "response_url": response_url,
        "trigger_id": "1.2.3",
    }


def signed_request(*, host: str, port: int, body: str) -> bytes:
    """The raw HTTP request Slack would send for ``body``, signed now."""
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    data = body.encode()
    head = (
        f"POST {HTTP_PATH} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "User-Agent: Slackbot 1.0 (+https://api.slack.com/robots)\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(data)}\r\n"
        f"X-Slack-Request-Timestamp: {timestamp}\r\n"
        f"X-Slack-Signature: {signature}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + data


@dataclass
class Burst:
    """What one burst measured: latencies of the acknowledged, reasons of the others."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _post(host: str, port: int, request: bytes) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        response = await reader.read()  # Connection: close: the whole response, then EOF
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    status = response.split(b"\r\n", 1)[0].split(b" ")
    if len(status) < 2 or status[1] != b"200":
        raise RuntimeError(f"HTTP {status[1].decode() if len(status) > 1 else 'no status'}")
    return elapsed


def http_burst(*, port: int, users: list[str], response_url: str) -> Burst:
    """``len(users)`` signed slash commands at once, each on its own connection."""
    host = "127.0.0.1"
    requests = [
        signed_request(
            host=host,
            port=port,
            body=urlencode(command_fields(user=user, response_url=response_url)),
        )
        for user in users
    ]

    async def fire() -> list[float | BaseException]:
        calls = [asyncio.wait_for(_post(host, port, r), TIMEOUT_S) for r in requests]
        return await asyncio.gather(*calls, return_exceptions=True)

    burst = Burst()
    for outcome in asyncio.run(fire()):
        if isinstance(outcome, BaseException):
            burst.errors.append(_reason(outcome))
        else:
            burst.latencies.append(outcome)
    return burst


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError):
        return str(exc)  # a status other than 200
    return "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__


class FakeSocketServer:
    """Slack's Socket Mode server as far as acks go: greets the one client with ``hello``,
    pushes envelopes in bursts and notes when each one's acknowledgement arrives."""

    def __init__(self) -> None:
        self._socket: web.WebSocketResponse | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._sent: dict[str, float] = {}
        self._acked: dict[str, float] = {}
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._served = ServedApp(app, name="bench-socket-mode")

    def start(self) -> FakeSocketServer:
        self._served.start()
        return self

    def stop(self) -> None:
        self._served.stop()

    @property
    def url(self) -> str:
        """What ``apps.connections.open`` answers."""
        return f"ws://127.0.0.1:{self._served.port}/link/?ticket=bench"

    def wait_connected(self, *, bot: SlackBot, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self._connected.wait(0.05):
            if bot.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proofroom slack did not connect:\n{bot.log_tail()}")

    def burst(self, envelopes: list[dict[str, Any]]) -> Burst:
        """Push ``envelopes`` back to back; wait for their acks (``TIMEOUT_S`` at most)."""
        ids = [e["envelope_id"] for e in envelopes]
        self._served.run(self._push(envelopes))
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                if all(i in self._acked for i in ids):
                    break
            time.sleep(0.01)
        burst = Burst()
        with self._lock:
            for envelope_id in ids:
                if envelope_id in self._acked:
                    burst.latencies.append(self._acked[envelope_id] - self._sent[envelope_id])
                else:
                    burst.errors.append("no ack")
        return burst

    async def _push(self, envelopes: list[dict[str, Any]]) -> None:
        assert self._socket is not None, "no client connected"
        for envelope in envelopes:
            text = json.dumps(envelope)
            with self._lock:
                self._sent[envelope["envelope_id"]] = time.perf_counter()
            await self._socket.send_str(text)

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket_ = web.WebSocketResponse(autoping=True)
        await socket_.prepare(request)
        self._socket = socket_
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID}}
        await socket_.send_str(json.dumps(hello))
        self._connected.set()
        async for message in socket_:
            if message.type == WSMsgType.TEXT:
                envelope_id = json.loads(message.data).get("envelope_id")
                with self._lock:
                    self._acked.setdefault(envelope_id, time.perf_counter())
        return socket_


def slash_envelopes(*, round_: int, users: list[str], response_url: str) -> list[dict[str, Any]]:
    """A ``slash_commands`` envelope per user, as Slack pushes them over the socket."""
    return [
        {
            "envelope_id": f"bench-{round_}-{k}",
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": {
                **command_fields(user=user, response_url=response_url),
                "is_enterprise_install": "false",
            },
        }
        for k, user in enumerate(users)
    ]


# ---- the run ---------------------------------------------------------------------------------
@dataclass
class Stack:
    """One checkout's bots (HTTP and Socket Mode) with their own fake Web API and socket server,
    and what was measured of them."""

    fake: FakeWebApi
    server: FakeSocketServer
    http_bot: SlackBot
    bursts: dict[str, Burst] = field(default_factory=lambda: {"http": Burst(), "socket": Burst()})
    answered: dict[str, int] = field(default_factory=lambda: {"http": 0, "socket": 0})
    total: int = 0  # answers the fake has received so far

    def burst(self, mode: str, *, round_: int, record: bool) -> None:
        """``CONCURRENCY`` commands at once in ``mode``; wait until all are answered."""
        users = [f"U{mode[0].upper()}{round_ + 1:02d}{k:03d}" for k in range(CONCURRENCY)]
        response_url = self.fake.response_url
        if mode == "http":
            done = http_burst(port=self.http_bot.port, users=users, response_url=response_url)
        else:
            envelopes = slash_envelopes(round_=round_, users=users, response_url=response_url)
            done = self.server.burst(envelopes)
        before = self.total
        self.total = self.fake.wait_answered(total=before + len(done.latencies))
        if record:
            self.bursts[mode].latencies += done.latencies
            self.bursts[mode].errors += done.errors
            self.answered[mode] += self.total - before

    def check_queued(self) -> None:
        """Every answer said "Queued job" (the commands really went through)."""
        replied, queued = self.fake.replies()
        if queued != replied:
            raise RuntimeError(f"{replied - queued} of {replied} commands were not queued")


@contextmanager
def running_stack(*, root: Path, redis_url: str, prefix: str) -> Iterator[Stack]:
    """The fake Web API, the socket server and both bots of the checkout at ``root``, started."""
    with ExitStack() as stack:
        server = FakeSocketServer().start()
        stack.callback(server.stop)
        fake = FakeWebApi(socket_url=server.url)
        stack.callback(fake.stop)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="proofroom-bench-")))
        bots = []
        for http in (True, False):
            bot = SlackBot(
                fake=fake, redis_url=redis_url, prefix=prefix, workdir=workdir, http=http, root=root
            )
            stack.callback(bot.stop)
            bots.append(bot)
        bots[0].wait_listening()
        server.wait_connected(bot=bots[1])
        yield Stack(fake=fake, server=server, http_bot=bots[0])


def measure(*, quick: bool = False, redis_url: str, baseline: Path | None = None) -> dict[str, Any]:
    """Run the benchmark (module docstring) and return its figures. ``baseline``: another
    checkout of the project whose bots are measured too, interleaved round by round (its
    figures under ``baseline_*``)."""
    rounds = 2 if quick else 5
    prefix = new_prefix()
    client = redis_lib.Redis.from_url(redis_url)
    roots = {"": REPO_ROOT} | ({"baseline_": baseline.resolve()} if baseline else {})
    try:
        with ExitStack() as running:
            stacks = {
                name: running.enter_context(
                    running_stack(root=root, redis_url=redis_url, prefix=prefix)
                )
                for name, root in roots.items()
            }
            for round_ in range(-1, rounds):  # round -1 warms up: threads, connections, imports
                for stack in stacks.values():
                    for mode in ("http", "socket"):
                        stack.burst(mode, round_=round_, record=round_ >= 0)
            for stack in stacks.values():
                stack.check_queued()
    finally:
        wipe(client, prefix)
        client.close()
    figures: dict[str, Any] = {
        "what": (
            f"/imagine x{CONCURRENCY} at once, time to Slack's ack: proofroom slack --http "
            "(signed HTTP) and Socket Mode (local WebSocket), fake Web API, no worker"
        ),
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "goal_p99_ms": GOAL_P99_S * 1000,
    }
    for name, stack in stacks.items():
        figures |= {name + key: value for key, value in _figures(stack).items()}
    if baseline is not None:
        figures["baseline"] = str(baseline)
    return figures


def _figures(stack: Stack) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for mode, burst in stack.bursts.items():
        times = sorted(burst.latencies)
        figures[f"{mode}_requests"] = len(times) + len(burst.errors)
        figures[f"{mode}_p50_ms"] = _ms(statistics.median(times)) if times else None
        figures[f"{mode}_p99_ms"] = _ms(_p99(times)) if times else None
        figures[f"{mode}_max_ms"] = _ms(times[-1]) if times else None
        figures[f"{mode}_errors"] = len(burst.errors)
        figures[f"{mode}_error_kinds"] = ", ".join(
            f"{kind} x{n}" for kind, n in Counter(burst.errors).items()
        )
        figures[f"{mode}_answered"] = stack.answered[mode]
    figures["meets_goal"] = all(
        figures[f"{mode}_errors"] == 0
        and figures[f"{mode}_p99_ms"] is not None
        and figures[f"{mode}_p99_ms"] < GOAL_P99_S * 1000
        for mode in stack.bursts
    )
    return figures


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[-1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = _parser().parse_args(argv)
    f = measure(quick=args.quick, redis_url=args.redis_url, baseline=args.baseline)
    print(f["what"])
    print(f"{f['rounds']} rounds of {f['concurrency']} per mode, interleaved; {args.redis_url}")
    print(
        f"{'bot':<10}{'mode':<8}{'requests':>9}{'p50':>10}{'p99':>10}{'max':>10}"
        f"{'errors':>8}{'answered':>10}"
    )
    for bot, prefix in (("this", ""), ("baseline", "baseline_")):
        for mode in ("http", "socket"):
            key = prefix + mode
            if key + "_requests" not in f:
                continue
            print(
                f"{bot:<10}{mode:<8}{f[key + '_requests']:>9}{_cell(f[key + '_p50_ms']):>10}"
                f"{_cell(f[key + '_p99_ms']):>10}{_cell(f[key + '_max_ms']):>10}"
                f"{f[key + '_errors']:>8}{f[key + '_answered']:>10}"
            )
            if f[key + "_error_kinds"]:
                print(f"{'':<18}errors: {f[key + '_error_kinds']}")
    print(f"{'goal':<18}{'':>9}{'':>10}{_cell(f['goal_p99_ms']):>10}{'':>10}{0:>8}")
    print("this checkout meets the goal" if f["meets_goal"] else "does not meet the goal")
    return 0


def _cell(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f} ms"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds per mode instead of 5")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout to measure too, round by round "
        "(e.g. `git archive HEAD | tar -x -C /tmp/before`)",
    )
    add_redis_url(parser)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
