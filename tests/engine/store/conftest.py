"""Fixtures of the artifact store tests: a real S3-compatible server for the session (moto's
server mode, see ``tests/s3_server.py``), one bucket in it, a clock each test sets, and
``store``: every contract test runs on the local store and on the S3 store alike."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from engine.store import ArtifactStore, LocalStore, S3Store
from tests.s3_server import CREDENTIALS, S3Server

# A fixed day, not today: nothing here depends on the date the tests run.
START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Clock:
    """The time a store stamps on what it stores; a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a running S3-compatible server, its credentials in the environment."""
    external = os.environ.get("PROOFROOM_TEST_S3_ENDPOINT")
    if external:
        yield external
        return
    with pytest.MonkeyPatch.context() as env:
        for name, value in CREDENTIALS.items():
            env.setenv(name, value)
        server = S3Server(workdir=tmp_path_factory.mktemp("s3")).start()
        try:
            yield server.endpoint
        finally:
            server.stop()


@pytest.fixture(scope="session")
def s3_bucket(s3_endpoint: str) -> str:
    """A bucket of this session (each test uses a prefix of its own in it)."""
    name = f"proofroom-test-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def clock() -> Clock:
    """The stores' clock, at :data:`START` until the test moves it."""
    return Clock(START)


def s3_store(*, endpoint: str, bucket: str, cache: Path, clock: Clock) -> S3Store:
    """An S3 store of its own prefix in ``bucket``."""
    return S3Store(
        bucket=bucket,
        prefix=f"test-{uuid.uuid4().hex[:8]}/",
        endpoint_url=endpoint,
        cache_dir=cache,
        clock=clock,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> ArtifactStore:
    """Each store kind, empty, on the test's clock."""
    if request.param == "local":
        return LocalStore(tmp_path / "artifacts", clock=clock)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return s3_store(endpoint=endpoint, bucket=bucket, cache=tmp_path / "cache", clock=clock)
