"""A recording fake of Discord's REST API: a real aiohttp server on 127.0.0.1.

discord.py's own ``HTTPClient`` talks to it over HTTP exactly as it talks to Discord (the
tests point ``discord.http.Route.BASE`` here), so its rate-limit bookkeeping, multipart
uploads and error mapping run for real. Every request is recorded as a :class:`Call`.
It answers what a bot needs: login, command sync, interaction callbacks, messages,
threads, reactions, members and roles, and it hosts users' attachments (the "CDN").
It can be told to answer one route with ``429`` (with ``retry_after``) or an error.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.served import ServedApp

BOT_ID = "1100000000000000001"
APP_ID = "1100000000000000002"
GUILD_ID = "1200000000000000001"
CHANNEL_ID = "1300000000000000001"
OWNER_ID = "1400000000000000009"
DISCORD_EPOCH_MS = 1420070400000


def snowflake(sequence: int) -> str:
    """A Discord id made now: milliseconds since Discord's epoch, then a 22-bit ``sequence``
    (callers in one process count in separate ranges, so their ids never collide)."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (sequence & 0x3FFFFF))


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str  # after /api/v10, with ids, e.g. /channels/13.../messages
    json: Any = None
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (filename, bytes)
    token: str | None = None  # the Authorization header
    at: float = field(default_factory=time.monotonic)
    status: int = 200


@dataclass
class _Rule:
    method: str
    prefix: str
    status: int
    body: dict[str, Any]
    times: int


class FakeDiscord:
    """State and scripting of the fake; :meth:`start` in a thread of its own, :meth:`stop`."""

    def __init__(self, *, token: str = "test-bot-token") -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[str, dict[str, Any]] = {}  # message id -> payload
        self.threads: dict[str, dict[str, Any]] = {}  # thread id -> channel payload
        self.channels: set[str] = {CHANNEL_ID}
        self.members: dict[str, dict[str, Any]] = {}  # user id -> member payload (guild)
        self.roles: list[dict[str, Any]] = [role(GUILD_ID, "@everyone")]
        self.hosted: dict[str, tuple[bytes, str]] = {}  # name -> (bytes, content type)
        self._rules: list[_Rule] = []
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._api)
        app.router.add_get("/cdn/{name}", self._cdn)
        self._served = ServedApp(app, name="fake-discord")

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeDiscord:
        self._served.start()
        return self

    def stop(self) -> None:
        self._served.stop()

    @property
    def port(self) -> int:
        return self._served.port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` is set to."""
        return f"{self.base}/api/v10"

    # ---- scripting -------------------------------------------------------------------
    def fail(self, method: str, prefix: str, *, status: int, body: dict[str, Any], times: int = 1):
        """Answer the next ``times`` requests ``method`` to a path starting with ``prefix``."""
        with self._lock:
            self._rules.append(_Rule(method, prefix, status, body, times))

    def clear_failures(self) -> None:
        """Forget every :meth:`fail` not used up (access was given back)."""
        with self._lock:
            self._rules.clear()

    def add_member(self, user_id: str, *, name: str, roles: list[str] = ()) -> dict[str, Any]:
        """A guild member; ``roles`` are role ids. Returns the member payload."""
        self.members[user_id] = payload = member(user_id, name, list(roles))
        return payload

    def add_role(self, role_id: str, name: str) -> dict[str, Any]:
        payload = role(role_id, name)
        self.roles.append(payload)
        return payload

    def host(self, name: str, data: bytes, content_type: str) -> str:
        """Host a user's attachment; returns its URL."""
        self.hosted[name] = (data, content_type)
        return f"{self.base}/cdn/{name}"

    # ---- reading ---------------------------------------------------------------------
    def calls_to(self, method: str, pattern: str = "") -> list[Call]:
        """Calls with this method whose path contains ``pattern``."""
        with self._lock:
            return [c for c in self.calls if c.method == method and pattern in c.path]

    def channel_posts(self) -> list[Call]:
        """Every message the bot posted with its token (channels and threads)."""
        with self._lock:
            return [
                c
                for c in self.calls
                if c.method == "POST" and c.path.endswith("/messages") and c.status < 300
            ]

    def snowflake(self) -> str:
        return snowflake(next(self._counter))

    # ---- answering -------------------------------------------------------------------
    async def _cdn(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        with self._lock:
            self.calls.append(Call("GET", f"/cdn/{name}"))
        if name not in self.hosted:
            return web.Response(status=404, text="not found")
        data, content_type = self.hosted[name]
        return web.Response(body=data, content_type=content_type)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        call = Call(request.method, path, token=request.headers.get("Authorization"))
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                body = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    call.json = json.loads(body)
                else:
                    call.files.append((part.filename or "", bytes(body)))  # type: ignore[union-attr]
        elif request.can_read_body:
            raw = await request.read()
            call.json = json.loads(raw) if raw else None
        rule = self._scripted(request.method, path)
        if rule is not None:
            call.status = rule.status
            with self._lock:
                self.calls.append(call)
            return _json(rule.body, status=rule.status, headers={"Via": "1.1 google"})
        if not path.startswith(("/interactions/", "/webhooks/")) and call.token != (
            f"Bot {self.token}"
        ):
            call.status = 401
            with self._lock:
                self.calls.append(call)
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        status, body = self._answer(request.method, path, call)
        call.status = status
        with self._lock:
            self.calls.append(call)
        if body is None:
            return web.Response(status=status)
        return _json(body, status=status)

    def _scripted(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.method == method and path.startswith(rule.prefix) and rule.times > 0:
                    rule.times -= 1
                    return rule
        return None

    def _answer(self, method: str, path: str, call: Call) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        payload = call.json or {}
        if method == "GET" and path == "/users/@me":
            return 200, user(BOT_ID, "proofroom", bot=True)
        if method == "GET" and parts[0] == "users" and len(parts) == 2:
            return 200, user(parts[1], f"user{parts[1][-3:]}")
        if method == "POST" and path == "/users/@me/channels":  # a direct-message channel
            dm = self.snowflake()
            with self._lock:
                self.channels.add(dm)
            recipient_id = str(payload["recipient_id"])  # discord.py sends it as a number
            recipient = user(recipient_id, f"user{recipient_id[-3:]}")
            return 200, {"id": dm, "type": 1, "recipients": [recipient], "last_message_id": None}
        if method == "GET" and path == "/oauth2/applications/@me":
            return 200, application()
        if method == "PUT" and parts[0] == "applications" and parts[-1] == "commands":
            guild_id = parts[3] if len(parts) == 5 else None
            return 200, [registered_command(c, guild_id) for c in payload]
        if method == "POST" and parts[0] == "interactions":  # callback: defer, autocomplete
            return 200, {"interaction": {"id": parts[1], "type": 2}}
        if parts[0] == "webhooks":  # the interaction's own message (never the job's posts)
            if method == "PATCH" or method == "POST":
                return 200, self._message("0", payload, call, author=BOT_ID)
            return 204, None
        if parts[0] == "channels" and len(parts) == 2 and method == "GET":
            if parts[1] in self.threads:
                return 200, self.threads[parts[1]]
            if parts[1] in self.channels:
                return 200, text_channel(parts[1])
            return 404, {"message": "Unknown Channel", "code": 10003}
        if parts[0] == "channels" and len(parts) == 3 and method == "POST":
            if parts[1] not in self.channels and parts[1] not in self.threads:
                return 404, {"message": "Unknown Channel", "code": 10003}
            nonce = payload.get("nonce") if payload.get("enforce_nonce") else None
            with self._lock:  # Discord: the same nonce again gives the first message back
                earlier = next(
                    (
                        m
                        for m in self.messages.values()
                        if nonce and m["channel_id"] == parts[1] and m.get("nonce") == nonce
                    ),
                    None,
                )
            if earlier is not None:
                return 200, earlier
            message = self._message(parts[1], payload, call, author=BOT_ID)
            if nonce:
                message["nonce"] = nonce
            return 200, message
        if parts[0] == "channels" and len(parts) == 4 and method == "PATCH":
            message = self.messages.get(parts[3])
            if message is None or message["channel_id"] != parts[1]:
                return 404, {"message": "Unknown Message", "code": 10008}
            message.update({k: v for k, v in payload.items() if k in ("content", "embeds")})
            message["edited_timestamp"] = "2024-01-01T00:00:01+00:00"
            return 200, message
        if parts[0] == "channels" and len(parts) == 5 and parts[4] == "threads":
            return self._thread(parts[1], parts[3], payload)
        if parts[0] == "channels" and "reactions" in parts and method == "PUT":
            return 204, None
        if parts[0] == "guilds" and len(parts) == 4 and parts[2] == "members":
            member = self.members.get(parts[3])
            if member is None:
                return 404, {"message": "Unknown Member", "code": 10007}
            return 200, member
        if parts[0] == "guilds" and parts[-1] == "roles" and method == "GET":
            return 200, self.roles
        return 404, {"message": f"fake Discord has no route {method} {path}", "code": 0}

    def _message(
        self, channel_id: str, payload: dict[str, Any], call: Call, *, author: str
    ) -> dict[str, Any]:
        message_id = self.snowflake()
        attachments = [
            {
                "id": self.snowflake(),
                "filename": name,
                "size": len(data),
                "url": f"{self.base}/cdn/{name}",
                "proxy_url": f"{self.base}/cdn/{name}",
            }
            for name, data in call.files
        ]
        message = message_payload(
            message_id, channel_id, payload.get("content") or "", author, attachments
        )
        with self._lock:
            self.messages[message_id] = message
        return message

    def _thread(self, channel_id: str, message_id: str, payload: dict[str, Any]):
        parent = self.messages.get(message_id)
        if parent is None or parent["channel_id"] != channel_id:
            return 404, {"message": "Unknown Message", "code": 10008}
        if message_id in self.threads:
            return 400, {
                "message": "A thread has already been created for this message",
                "code": 160004,
            }
        thread = {
            "id": message_id,  # Discord: a thread started from a message has its id
            "type": 11,
            "guild_id": GUILD_ID,
            "parent_id": channel_id,
            "owner_id": BOT_ID,
            "name": payload["name"],
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": payload.get("auto_archive_duration", 1440),
                "archive_timestamp": "2024-01-01T00:00:00+00:00",
                "locked": False,
            },
        }
        self.threads[message_id] = thread
        return 201, thread


# ---- payload shapes (as Discord's API documents them) ----------------------------------
def user(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": user_id,
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
    }
    if bot:
        data["bot"] = True
    return data


def member(user_id: str, name: str, roles: list[str] = ()) -> dict[str, Any]:
    """A guild member, as in REST answers and in gateway events (which add permissions)."""
    return {
        "user": user(user_id, name),
        "roles": list(roles),
        "joined_at": "2024-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
    }


def text_channel(channel_id: str = CHANNEL_ID) -> dict[str, Any]:
    return {
        "id": channel_id,
        "type": 0,
        "guild_id": GUILD_ID,
        "name": "renders",
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "rate_limit_per_user": 0,
        "last_message_id": None,
    }


def role(role_id: str, name: str) -> dict[str, Any]:
    return {
        "id": role_id,
        "name": name,
        "color": 0,
        "hoist": False,
        "position": 1,
        "permissions": "0",
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def application() -> dict[str, Any]:
    return {
        "id": APP_ID,
        "name": "Proofroom",
        "description": "",
        "icon": None,
        "bot_public": False,
        "bot_require_code_grant": False,
        "owner": user(OWNER_ID, "owner"),
        "verify_key": "0" * 64,
        "flags": 0,
    }


def registered_command(command: dict[str, Any], guild_id: str | None) -> dict[str, Any]:
    data = {
        **command,
        "id": str(abs(hash(command["name"])) % 10**18),
        "application_id": APP_ID,
        "version": "1",
        "default_member_permissions": None,
    }
    if guild_id:
        data["guild_id"] = guild_id
    return data


def message_payload(
    message_id: str,
    channel_id: str,
    content: str,
    author: str,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "channel_id": channel_id,
        "author": user(author, "proofroom", bot=author == BOT_ID),
        "content": content,
        "timestamp": "2024-01-01T00:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": attachments or [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
    }


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json", no charset: discord.py decodes JSON only on an exact match,
    # as Discord sends it.
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
