"""The native API's refusals on a real HTTP server: 401 without a valid key (Bearer and
Basic both read), 413 over the body limit, 422 with the chat's sentence and the field, 429
over a quota, 503 while Redis is away. None of these needs a worker: nothing is rendered."""

from __future__ import annotations

import base64
import http.client
import io
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from PIL import Image
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.api.keys import ApiKey, ApiKeys
from bot.api.limits import ApiSettings
from bot.api.routes import build_api_routes
from bot.quotas.policy import Quotas
from bot.serve.service import HttpService
from bot.settings import BotSettings
from engine.settings import Settings
from tests.bot.api.conftest import Api, basic
from tests.bot.conftest import queued_jobs


def png(width: int, height: int, *, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_401_without_a_valid_key_and_both_ways_of_sending_one(
    api: Api, cms_key: tuple[ApiKey, str], keys: ApiKeys
) -> None:
    _, secret = cms_key
    for headers in ({}, {"Authorization": "Bearer pr_not-a-key"}, {"Authorization": basic("x")}):
        answer = api.get("/v1/jobs/abc", secret=None, headers=headers)
        assert answer.status == 401, headers
        assert answer.headers["www-authenticate"] == 'Basic realm="proofroom", Bearer'
        assert "API key" in answer.json()["error"] or "key" in answer.json()["error"]
    created = api.post(
        "/v1/jobs", {"prompt": "a red mug"}, secret=None, headers={"Authorization": basic(secret)}
    )
    assert created.status == 201, created.body  # the key as HTTP Basic's password
    assert api.get(f"/v1/jobs/{created.json()['id']}").status == 200  # as a Bearer token

    assert keys.revoke("cms")
    revoked = api.get(f"/v1/jobs/{created.json()['id']}")
    assert revoked.status == 401
    assert "revoked" in revoked.json()["error"]


def test_413_for_a_body_over_the_limit_declared_or_streamed(
    serve_api: Callable[..., Api],
    cms_key: tuple[ApiKey, str],
    settings: Settings,
    redis: redis_lib.Redis,
) -> None:
    api = serve_api(api=ApiSettings(max_body_bytes=4096), secret=cms_key[1])
    big = {"prompt": "a red mug", "init_image": b64(png(64, 64)) + "A" * 8000}
    answer = api.post("/v1/jobs", big)
    assert answer.status == 413
    assert "PROOFROOM_API_MAX_BODY_BYTES" in answer.json()["error"]

    # Chunked, no Content-Length: refused as the bytes arrive.
    parts = urlsplit(api.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    chunks = iter([b'{"prompt": "a red mug", "negative": "', b"x" * 3000, b"x" * 3000, b'"}'])
    connection.request(
        "POST",
        "/v1/jobs",
        body=chunks,
        headers={"Authorization": f"Bearer {cms_key[1]}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    assert queued_jobs(settings, redis) == 0


@pytest.mark.parametrize(
    ("body", "field", "sentence"),
    [
        ({"prompt": "a red mug", "steps": 500}, None, "Steps must be between 1 and 60"),
        ({"prompt": "a red mug", "sampler": "Eulr"}, "sampler", "Unknown sampler `Eulr`"),
        ({"prompt": "a red mug", "model": "nosuchmodel"}, "model", "nosuchmodel"),
        ({"prompt": "a red mug", "size": "big"}, "size", "--size needs WxH like 768x512"),
        ({"prompt": "a red mug", "width": 64}, "height", "`width` and `height` go together"),
        ({"prompt": "a red mug", "aspect": "9:1"}, "aspect", "too stretched"),
        ({"prompt": "a red mug", "steps": "many"}, "steps", "`steps`: input should be"),
        ({"prompt": "a red mug", "colour": "red"}, "colour", "`colour` is not a field"),
        ({"prompt": "a red mug", "loras": [{"name": "nope"}]}, "loras.0", "nope"),
        ({"prompt": "a red mug", "strength": 0.5}, None, "--strength says how far"),
        ({"prompt": "  "}, "prompt", "Describe the image you want"),
        ({"template": "product-photo"}, None, "product"),
        ({"prompt": "a red mug", "init_image": "%%%"}, "init_image", "not a base64 image"),
        (
            {"prompt": "a red mug", "init_image": b64(b"GIF89a not really")},
            None,
            "`init_image` is not an image Proofroom can read",
        ),
        (
            # A decompression bomb: a few kilobytes whose header says 25 million pixels.
            {"prompt": "a red mug", "init_image": b64(png(5000, 5000, mode="1"))},
            None,
            "pixels",
        ),
        ([1, 2], None, "The body must be a JSON object"),
    ],
)
def test_422_names_the_problem_in_the_chats_words(
    api: Api,
    settings: Settings,
    redis: redis_lib.Redis,
    body: object,
    field: str | None,
    sentence: str,
) -> None:
    answer = api.post("/v1/jobs", body)
    assert answer.status == 422, answer.body
    problem = answer.json()
    assert sentence in problem["error"], problem
    assert not problem["error"][0].islower()  # a sentence
    if field is not None:
        assert problem["field"] == field
    assert queued_jobs(settings, redis) == 0


def test_422_for_a_body_that_is_not_json(api: Api) -> None:
    answer = api.call("POST", "/v1/jobs", data=b"{prompt", headers={"Content-Type": "text/plain"})
    assert answer.status == 422
    assert answer.json()["error"].startswith("The body is not valid JSON")


def test_429_over_a_quota(
    serve_api: Callable[..., Api],
    cms_key: tuple[ApiKey, str],
    bot_settings: BotSettings,
    settings: Settings,
    redis: redis_lib.Redis,
) -> None:
    limited = bot_settings.model_copy(update={"quotas": Quotas(concurrent_jobs=1)})
    api = serve_api(bot=limited, secret=cms_key[1])
    assert api.post("/v1/jobs", {"prompt": "a red mug"}).status == 201  # waits: no worker
    refused = api.post("/v1/jobs", {"prompt": "a blue mug"})
    assert refused.status == 429
    assert refused.json()["limit"] == "concurrent_jobs"
    assert "1" in refused.json()["error"]
    assert queued_jobs(settings, redis) == 1


def test_503_while_redis_is_away(
    settings: Settings,
    bot_settings: BotSettings,
    cms_key: tuple[ApiKey, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # No retries: the client gives up at once (a real one retries with backoff first).
    away = redis_lib.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    routes = build_api_routes(settings=settings, bot_settings=bot_settings, redis=away)
    service = HttpService(settings=settings, redis=away, host="127.0.0.1", port=0, routes=routes)
    service.start(pump=False)
    try:
        api = Api(service.url, cms_key[1])
        for answer in (api.get("/v1/jobs/abc"), api.post("/v1/jobs", {"prompt": "a red mug"})):
            assert answer.status == 503
            assert "Redis" in answer.json()["error"]
        # One line when the outage starts, not one per request.
        said = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
        assert len(said) == 1
    finally:
        service.close()
