"""API keys and ``proofroom api-key create|list|revoke`` (run as a command, on the test's
Redis and prefix): the key is printed once and kept only as a hash; a revoked key gets 401."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable

import pytest
import redis as redis_lib

from bot.api.keys import ApiKeys, hash_secret
from engine.errors import UserError
from engine.settings import REPO_ROOT, Settings
from tests.bot.api.conftest import Api

KEY = re.compile(r"^    (pr_[A-Za-z0-9_-]{32})$", re.MULTILINE)


def proofroom(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url or "",
        "PROOFROOM_KEY_PREFIX": settings.key_prefix,
        "PROOFROOM_DATA_DIR": str(settings.data_dir),
        "PYTHONPATH": str(REPO_ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *argv],
        env=env,
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_are_kept_hashed_and_found_by_their_secret(
    keys: ApiKeys, redis: redis_lib.Redis, settings: Settings
) -> None:
    key, secret = keys.create(name="cms", user="U1")
    assert re.fullmatch(r"pr_[A-Za-z0-9_-]{32}", secret)
    assert keys.find(secret) == key
    assert keys.find(secret + "x") is None and keys.find("Bearer") is None
    assert key.requested_by == "api:U1"
    stored = b" ".join(
        value
        for k in redis.scan_iter(match=f"{settings.key_prefix}*")
        if redis.type(k) == b"hash"
        for value in redis.hgetall(k).values()
        if isinstance(value, bytes)
    )
    assert secret.encode() not in stored
    assert hash_secret(secret).encode() in stored
    with pytest.raises(UserError, match="exists"):
        keys.create(name="cms", user="U2")
    with pytest.raises(UserError, match="platform"):
        keys.create(name="review", user="U2", review_channel="C1")
    slack, _ = keys.create(name="review", user="U2", review_channel="C1", review_platform="slack")
    assert slack.requested_by == "slack:U2"
    keys.set_default_model(key, "tiny")
    keys.set_latest_job(key, "abc")
    assert (keys.default_model(key), keys.latest_job(key)) == ("tiny", "abc")
    assert keys.default_model(slack) is None


def test_api_key_command_create_list_revoke(
    settings: Settings,
    serve_api: Callable[..., Api],
    redis: redis_lib.Redis,
) -> None:
    made = proofroom(settings, "api-key", "create", "--name", "cms", "--user", "U1")
    assert made.returncode == 0, made.stderr
    secrets = KEY.findall(made.stdout)
    assert len(secrets) == 1
    secret = secrets[0]
    assert made.stdout.count(secret) >= 1 and "Authorization: Bearer" in made.stdout
    assert "api:U1" in made.stdout

    review = proofroom(
        settings,
        "api-key",
        "create",
        "--name",
        "catalog",
        "--user",
        "U7",
        "--review-channel",
        "C9",
        "--platform",
        "slack",
    )
    assert review.returncode == 0, review.stderr
    again = proofroom(settings, "api-key", "create", "--name", "cms", "--user", "U1")
    assert again.returncode == 2 and "exists" in again.stderr

    listed = proofroom(settings, "api-key", "list")
    assert listed.returncode == 0
    assert "cms" in listed.stdout and "catalog" in listed.stdout and "slack C9" in listed.stdout
    assert "pr_" not in listed.stdout

    api = serve_api(secret=secret)
    assert api.post("/v1/jobs", {"prompt": "a red mug"}).status == 201
    revoked = proofroom(settings, "api-key", "revoke", "cms")
    assert revoked.returncode == 0, revoked.stderr
    assert api.get("/v1/jobs/abc").status == 401
    assert proofroom(settings, "api-key", "revoke", "cms").returncode == 1
    key_id = ApiKeys(redis=redis, key_prefix=settings.key_prefix).list()[0].id
    assert proofroom(settings, "api-key", "revoke", key_id).returncode == 0  # by id
    assert "No API keys" in proofroom(settings, "api-key", "list").stdout


def test_the_openapi_document_needs_no_key(api: Api) -> None:
    answer = api.get("/v1/openapi.json", secret=None)
    assert answer.status == 200
    document = answer.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {"/v1/jobs", "/v1/jobs/{job_id}/events"}
