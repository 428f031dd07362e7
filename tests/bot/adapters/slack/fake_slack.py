"""A recording fake of the Slack Web API: a real HTTP server on 127.0.0.1.

``WebClient(base_url=fake.api_url)`` talks to it over HTTP exactly as it talks to Slack,
so retries, multipart uploads and error handling run for real. Every call is recorded.
It can be told to answer one call with ``429 Retry-After: 1`` or with an API error such as
``not_in_channel``, and it hosts files for the intake tests (downloads need the bot token,
and a wrong token gets Slack's HTML login page with status 200, as Slack does).
"""

from __future__ import annotations

import itertools
import json
import threading
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
            self.wfile.write(body)

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
                with fake._lock:
                    fake.calls.append(Call("upload", {"file": file_id, "bytes": len(raw)}, None))
                    fake.uploads[file_id]["data"] = raw
                self._send(200, f"OK - {len(raw)}".encode(), "text/plain")
                return
            method = path.removeprefix("/api/")
            args = _parse_args(self.headers.get("Content-Type", ""), raw, self.path)
            rule = fake._scripted(method)
            token = fake.app_token if method == "apps.connections.open" else fake.bot_token
            if self._token() != token:
                status, body = 200, {"ok": False, "error": "invalid_auth"}
            elif rule is not None:
                status, body = rule.status, rule.body
            else:
                with fake._lock:
                    status, body = 200, fake.answer(method, args)
            with fake._lock:
                fake.calls.append(Call(method, args, self._token(), status, body))
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
