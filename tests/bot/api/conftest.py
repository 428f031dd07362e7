"""Fixtures of the HTTP API's tests: the API served on 127.0.0.1 by the real HTTP service
(``bot.serve.service.HttpService`` with ``bot.api.routes``) on the test's Redis and key
prefix, API keys, and a small HTTP client (urllib) that reads error statuses as answers."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis as redis_lib

from bot.api.keys import ApiKey, ApiKeys
from bot.api.limits import ApiSettings
from bot.api.routes import build_api_routes
from bot.serve.service import HttpService
from bot.settings import BotSettings
from engine.settings import Settings


@dataclass
class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Api:
    """The API at ``url``, called with ``secret`` unless told otherwise."""

    url: str
    secret: str | None = None

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        secret: str | None | bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Answer:
        """``method path``; ``body`` sent as JSON; ``secret`` True: this API's key as a
        Bearer token, a string: that key, None/False: no Authorization header."""
        sent = dict(headers or {})
        use = self.secret if secret is True else secret
        if use:
            sent.setdefault("Authorization", f"Bearer {use}")
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Answer(response.status, response.read(), _lower(response.headers))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read(), _lower(exc.headers))

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return self.call("POST", path, body=body, **kw)

    def get(self, path: str, **kw: Any) -> Answer:
        return self.call("GET", path, **kw)

    def with_key(self, secret: str) -> Api:
        return Api(self.url, secret)

    def events(self, job_id: str, *, timeout: float = 120) -> list[tuple[str, dict[str, Any]]]:
        """The server-sent events of ``job_id`` until the stream ends: (event, data)."""
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=timeout
        )
        connection.request(
            "GET", f"/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {self.secret}"}
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
        assert response.getheader("content-type", "").startswith("text/event-stream")
        found: list[tuple[str, dict[str, Any]]] = []
        event, data = "message", ""
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
            elif not line and data:
                found.append((event, json.loads(data)))
                event, data = "message", ""
        connection.close()
        return found


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def basic(secret: str, user: str = "anyone") -> str:
    """An HTTP Basic ``Authorization`` value with ``secret`` as the password."""
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@pytest.fixture()
def keys(redis: redis_lib.Redis, settings: Settings) -> ApiKeys:
    """The API keys of this test's prefix."""
    return ApiKeys(redis=redis, key_prefix=settings.key_prefix)


@pytest.fixture()
def cms_key(keys: ApiKeys) -> tuple[ApiKey, str]:
    """A key named ``cms`` for user ``U1`` and its secret."""
    return keys.create(name="cms", user="U1")


@pytest.fixture()
def serve_api(
    settings: Settings, redis: redis_lib.Redis, bot_settings: BotSettings
) -> Iterator[Callable[..., Api]]:
    """Start the HTTP service with the API on a free port of 127.0.0.1 (``bot_settings``
    and ``api_settings`` may be given); stopped afterwards."""
    started: list[HttpService] = []

    def start(
        *, bot: BotSettings | None = None, api: ApiSettings | None = None, secret: str | None = None
    ) -> Api:
        routes = build_api_routes(
            settings=settings, bot_settings=bot or bot_settings, redis=redis, api_settings=api
        )
        service = HttpService(
            settings=settings, redis=redis, host="127.0.0.1", port=0, routes=routes
        ).start(pump=False)
        started.append(service)
        return Api(service.url, secret)

    yield start
    for service in started:
        service.close()


@pytest.fixture()
def api(serve_api: Callable[..., Api], cms_key: tuple[ApiKey, str]) -> Api:
    """The API served with default settings, called with the ``cms`` key."""
    return serve_api(secret=cms_key[1])
