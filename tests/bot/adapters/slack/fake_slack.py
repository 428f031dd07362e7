"""A recording fake of the Slack Web API: a real HTTP server on 127.0.0.1.

``WebClient(base_url=fake.api_url)`` talks to it over HTTP exactly as it talks to Slack,
so retries, multipart uploads and error handling run for real. Every call is recorded.
It can be told to answer one call with ``429 Retry-After: 1`` or with an API error such as
``not_in_channel``; to fail as a network does (:meth:`FakeSlack.server_error`,
:meth:`FakeSlack.delay`, :meth:`FakeSlack.reset`, :meth:`FakeSlack.refuse_channel`), and it
hosts files for the intake tests (downloads need the bot token,
and a wrong token gets Slack's HTML login page with status 200, as Slack does).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

BOT_USER = "UPROOFBOT"
BOT_ID = "BPROOF"
TEAM = "T0TEAM"


@dataclass
class Call:
    """One request the fake received."""

    method: str  # "chat.postMessage", or "upload" / "download" for file bytes
    args: dict[str, Any]
    token: str | None
    status: int = 200
    response: dict[str, Any] | None = None  # the JSON the fake answered


@dataclass
class HostedFile:
    """A file a user attached to a message, as files.info describes it."""

    id: str
    name: str
    mimetype: str
    filetype: str
    size: int
    data: bytes

    def info(self, base: str) -> dict[str, Any]:
        url = f"{base}files-pri/{TEAM}-{self.id}/{self.name}"
        return {
            "id": self.id,
            "name": self.name,
            "title": self.name,
            "mimetype": self.mimetype,
            "filetype": self.filetype,
            "size": self.size,
            "mode": "hosted",
            "url_private": url,
            "url_private_download": url + "?download=1",
        }


@dataclass
class _Rule:
    method: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    times: int | None  # None: always


@dataclass
class _Fault:
    """A network-level failure: ``status`` (an HTTP 5xx with no Slack answer), ``delay``
    (the call takes effect, the answer comes ``seconds`` late) or ``reset`` (the connection
    is closed without an answer; after the call took effect when ``processed``)."""

    method: str  # an API method, or "upload" for the bytes of a file
    kind: str
    status: int = 500
    seconds: float = 0.0
    processed: bool = False
    times: int | None = 1  # None: always


@dataclass
class FakeSlack:
    """State and scripting of the fake; start with :meth:`start`, stop with :meth:`stop`."""

    bot_token: str = "xoxb-test-token"
    app_token: str = "xapp-test-token"  # Socket Mode: apps.connections.open only
    socket_url: str | None = None  # what apps.connections.open answers (FakeSocketMode.url)
    # files.info reports a share only from the n-th call on, as Slack shares asynchronously.
    share_visible_after: int = 1
    calls: list[Call] = field(default_factory=list)
    files: dict[str, HostedFile] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    _rules: list[_Rule] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    # Requests received per method, counted when they arrive (before any answer).
    _started: Counter[str] = field(default_factory=Counter)
    _refused: dict[str, str] = field(default_factory=dict)  # channel -> Slack error
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # ---- lifecycle -----------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def api_url(self) -> str:
        return self.base + "api/"

    @property
    def response_url(self) -> str:
        """Prefix of the response_url given with commands and actions."""
        return self.base + "response/"

    # ---- scripting ----------------------------------------------------------------
    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429 and Retry-After."""
        self._rules.append(
            _Rule(
                method,
                429,
                {"ok": False, "error": "ratelimited"},
                {"Retry-After": str(retry_after)},
                times,
            )
        )

    def fail(self, method: str, error: str, *, times: int | None = None) -> None:
        """Answer ``method`` with ``{"ok": false, "error": error}`` (always, or ``times``)."""
        self._rules.append(_Rule(method, 200, {"ok": False, "error": error}, {}, times))

    def server_error(self, method: str, *, status: int = 500, times: int | None = 1) -> None:
        """Answer ``method`` with HTTP ``status`` and a plain-text body, as a load balancer
        in trouble does; the call takes no effect."""
        self._faults.append(_Fault(method, "status", status=status, times=times))

    def delay(self, method: str, seconds: float, *, times: int | None = 1) -> None:
        """Let ``method`` take effect, then answer only after ``seconds``: a client with a
        shorter timeout gives up on a call that happened."""
        self._faults.append(_Fault(method, "delay", seconds=seconds, times=times))

    def reset(self, method: str, *, processed: bool = False, times: int | None = 1) -> None:
        """Close the connection of ``method`` without an answer; ``processed``: after the
        call took effect (the client cannot tell which)."""
        self._faults.append(_Fault(method, "reset", processed=processed, times=times))

    def refuse_channel(self, channel: str, error: str = "channel_not_found") -> None:
        """Answer every call about ``channel`` with ``error`` until :meth:`admit_channel`
        (the bot was removed from a private channel, or it was deleted)."""
        with self._lock:
            self._refused[channel] = error

    def admit_channel(self, channel: str) -> None:
        """Undo :meth:`refuse_channel` (the bot was invited again)."""
        with self._lock:
            self._refused.pop(channel, None)

    def started(self, method: str) -> int:
        """Requests of ``method`` received so far, answered or not."""
        with self._lock:
            return self._started[method]

    def host_file(
        self, *, name: str, data: bytes, mimetype: str, filetype: str, size: int | None = None
    ) -> dict[str, Any]:
        """Host a user's file; returns the file object as it appears in an event."""
        file_id = f"FUSER{len(self.files) + 1:04d}"
        hosted = HostedFile(
            file_id, name, mimetype, filetype, len(data) if size is None else size, data
        )
        self.files[file_id] = hosted
        return hosted.info(self.base)

    # ---- reading ------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # ---- answering ----------------------------------------------------------------
    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _scripted(self, method: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.method == method and rule.times != 0:
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _fault(self, method: str) -> _Fault | None:
        with self._lock:
            self._started[method] += 1
            for fault in self._faults:
                if fault.method == method and fault.times != 0:
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _channel_error(self, args: dict[str, Any]) -> str | None:
        with self._lock:
            channel = args.get("channel") or args.get("channel_id")
            return self._refused.get(channel) if isinstance(channel, str) else None

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """The JSON body of a successful call (after scripted failures were checked)."""
        if method == "apps.connections.open":
            if self.socket_url is None:
                return {"ok": False, "error": "not_allowed_token_type"}
            return {"ok": True, "url": self.socket_url}
        if method == "auth.test":
            return {
                "ok": True,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
                "team_id": TEAM,
                "user": "proofroom",
                "team": "Test",
                "url": "https://test.slack.com/",
            }
        if method == "chat.postMessage":
            ts = self._next_ts()
            message = {"ts": ts, "text": args.get("text"), "user": BOT_USER}
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            return {"ok": True, "channel": args["channel"], "ts": ts, "message": message}
        if method == "chat.update":
            return {
                "ok": True,
                "channel": args["channel"],
                "ts": args["ts"],
                "text": args.get("text"),
            }
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "conversations.open":  # the bot's direct message with a user
            return {"ok": True, "channel": {"id": f"D{args['users']}"}}
        if method == "files.getUploadURLExternal":
            file_id = f"FBOT{len(self.uploads) + 1:04d}"
            self.uploads[file_id] = {
                "filename": args["filename"],
                "length": int(args["length"]),
                "data": None,
                "shares": None,
                "info_calls": 0,
            }
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.base}upload/{file_id}"}
        if method == "files.completeUploadExternal":
            files = json.loads(args["files"]) if isinstance(args["files"], str) else args["files"]
            done = []
            for item in files:
                upload = self.uploads[item["id"]]
                if upload["data"] is None:
                    return {"ok": False, "error": "file_not_found"}
                if args.get("channel_id"):
                    share = {"ts": self._next_ts(), "channel_name": "general", "reply_count": 0}
                    if args.get("thread_ts"):
                        share["thread_ts"] = args["thread_ts"]
                    upload["shares"] = {"public": {args["channel_id"]: [share]}}
                    upload["initial_comment"] = args.get("initial_comment")
                    upload["thread_ts"] = args.get("thread_ts")
                    upload["channel"] = args["channel_id"]
                done.append(
                    {"id": item["id"], "title": item.get("title"), "name": upload["filename"]}
                )
            return {"ok": True, "files": done}
        if method == "files.info":
            file_id = args["file"]
            if file_id in self.files:
                return {"ok": True, "file": self.files[file_id].info(self.base)}
            upload = self.uploads.get(file_id)
            if upload is None:
                return {"ok": False, "error": "file_not_found"}
            upload["info_calls"] += 1
            info: dict[str, Any] = {"id": file_id, "name": upload["filename"]}
            if upload["shares"] and upload["info_calls"] >= self.share_visible_after:
                info["shares"] = upload["shares"]
            return {"ok": True, "file": info}
        return {"ok": False, "error": "unknown_method"}

    def shared_files(self, *, thread: str) -> list[dict[str, Any]]:
        """Files uploaded into ``thread`` whose message files.info has reported, in upload
        order, with the ts of that message."""
        return [
            {
                "file": file_id,
                **upload,
                "ts": upload["shares"]["public"][upload["channel"]][0]["ts"],
            }
            for file_id, upload in self.uploads.items()
            if upload["shares"]
            and upload.get("thread_ts") == thread
            and upload["info_calls"] >= self.share_visible_after
        ]


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: bytes, content_type: str, headers=None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            # The client may have given up (a timeout, a killed bot): the call still ran.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def _reset(self) -> None:
            """Close the connection at once, with no answer (an RST, not a clean end)."""
            self.close_connection = True
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.connection.close()

        def _faulted(self, fault: _Fault | None, method: str, args: dict[str, Any]) -> bool:
            """Apply ``fault`` before the call takes effect; True when it was answered."""
            if fault is None or (fault.kind == "reset" and fault.processed):
                return False
            if fault.kind == "status":
                with fake._lock:
                    fake.calls.append(Call(method, args, self._token(), fault.status, None))
                self._send(fault.status, b"upstream connect error", "text/plain")
                return True
            if fault.kind == "reset":
                with fake._lock:
                    fake.calls.append(Call(method, args, self._token(), 0, None))
                self._reset()
                return True
            return False

        def _after(self, fault: _Fault | None) -> bool:
            """Apply ``fault`` after the call took effect; True when no answer is to go."""
            if fault is None:
                return False
            if fault.kind == "delay":
                time.sleep(fault.seconds)
            if fault.kind == "reset" and fault.processed:
                self._reset()
                return True
            return False

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return auth.removeprefix("Bearer ") or None

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path.startswith("/files-pri/"):
                file_id = path.split("/")[2].split("-", 1)[1]
                hosted = fake.files.get(file_id)
                token = self._token()
                with fake._lock:
                    fake.calls.append(Call("download", {"file": file_id}, token))
                if hosted is None:
                    self._send(404, b"not found", "text/plain")
                elif token != fake.bot_token:
                    self._send(200, b"<!DOCTYPE html><html>Sign in</html>", "text/html")
                else:
                    self._send(200, hosted.data, hosted.mimetype)
                return
            self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path.startswith("/response/"):
                # response_url answers (respond()): JSON with text and response_type.
                with fake._lock:
                    fake.calls.append(Call("response", json.loads(raw or b"{}"), None))
                self._send(200, b"ok", "text/plain")
                return
            if path.startswith("/upload/"):
                file_id = path.rsplit("/", 1)[1]
                fault = fake._fault("upload")
                if self._faulted(fault, "upload", {"file": file_id, "bytes": len(raw)}):
                    return
                with fake._lock:
                    fake.calls.append(Call("upload", {"file": file_id, "bytes": len(raw)}, None))
                    fake.uploads[file_id]["data"] = raw
                if not self._after(fault):
                    self._send(200, f"OK - {len(raw)}".encode(), "text/plain")
                return
            method = path.removeprefix("/api/")
            args = _parse_args(self.headers.get("Content-Type", ""), raw, self.path)
            fault = fake._fault(method)
            if self._faulted(fault, method, args):
                return
            rule = fake._scripted(method)
            token = fake.app_token if method == "apps.connections.open" else fake.bot_token
            refused = fake._channel_error(args)
            if self._token() != token:
                status, body = 200, {"ok": False, "error": "invalid_auth"}
            elif rule is not None:
                status, body = rule.status, rule.body
            elif refused is not None:
                status, body = 200, {"ok": False, "error": refused}
            else:
                with fake._lock:
                    status, body = 200, fake.answer(method, args)
            lost = fault is not None and fault.kind == "reset"  # status 0: no answer came
            with fake._lock:
                fake.calls.append(Call(method, args, self._token(), 0 if lost else status, body))
            if self._after(fault):
                return
            self._send(
                status,
                json.dumps(body).encode(),
                "application/json",
                rule.headers if rule else None,
            )

    return Handler


def _parse_args(content_type: str, raw: bytes, path: str) -> dict[str, Any]:
    args: dict[str, Any] = dict(parse_qsl(urlparse(path).query))
    if content_type.startswith("application/json"):
        args.update(json.loads(raw or b"{}"))
    elif content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            args[name] = payload if part.get_filename() else payload.decode()
    else:
        args.update(parse_qsl(raw.decode()))
    return args
