"""The ``ArtifactStore`` contract, run against the local folder and against a real S3 server
(``store`` is parametrized): write, read, metadata, local path, list by job, signed URL,
delete, and the ids of the days before a day."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest

from engine.store import ArtifactNotFoundError, ArtifactStore, LocalStore, S3Store
from tests.engine.store.conftest import START, Clock

PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


def test_put_get_exists_path_and_meta(store: ArtifactStore, tmp_path: Path) -> None:
    meta = {"job_id": "j1", "index": 0, "filename": "café ☕.png", "note": 'a "quoted"\nline'}
    artifact_id = store.put(PNG, suffix=".png", meta=meta)

    assert artifact_id.startswith("20261120-") and artifact_id.endswith(".png")
    assert store.exists(artifact_id)
    assert store.get(artifact_id) == PNG
    assert store.meta(artifact_id) == meta
    path = store.path(artifact_id)
    assert path.read_bytes() == PNG and path.is_relative_to(tmp_path)
    assert store.path(artifact_id) == path  # the same file every time
    assert not list(tmp_path.rglob("*.tmp"))


def test_metadata_too_long_for_a_header_round_trips(store: ArtifactStore) -> None:
    meta = {"job_id": "j1", "prompt": "ünïcode " * 400}  # far past S3's 2 KB of headers
    artifact_id = store.put(PNG, suffix=".png", meta=meta)
    assert store.meta(artifact_id) == meta
    assert store.get(artifact_id) == PNG


def test_without_metadata(store: ArtifactStore) -> None:
    artifact_id = store.put(b"a,b\n", suffix=".csv")
    assert store.meta(artifact_id) is None
    assert store.get(artifact_id) == b"a,b\n"


def test_ids_are_unique(store: ArtifactStore) -> None:
    assert len({store.put(b"x", suffix=".png") for _ in range(20)}) == 20


def test_list_by_job(store: ArtifactStore) -> None:
    first = [store.put(PNG, suffix=".png", meta={"job_id": "job-a", "index": i}) for i in range(3)]
    other = store.put(PNG, suffix=".png", meta={"job_id": "job-b", "index": 0})
    store.put(PNG, suffix=".png", meta={"role": "init"})  # no job: in no list
    store.put(PNG, suffix=".png")

    assert store.list_job("job-a") == sorted(first)
    assert store.list_job("job-b") == [other]
    assert store.list_job("job-c") == []
    for bad in ("", "..", "../job-a", "job-a/..", "job a"):
        assert store.list_job(bad) == []


def test_a_bad_job_id_in_metadata_is_refused(store: ArtifactStore) -> None:
    with pytest.raises(ValueError, match="job id"):
        store.put(PNG, suffix=".png", meta={"job_id": "../../etc"})


@pytest.mark.parametrize("suffix", ["png", "./png", ".PNG/..", ".toolongsuffix"])
def test_bad_suffixes_are_refused(store: ArtifactStore, suffix: str) -> None:
    with pytest.raises(ValueError):
        store.put(b"x", suffix=suffix)


@pytest.mark.parametrize(
    "bad",
    [
        "../secret.png",
        "20250101-0123456789abcdef.png/../x",
        "a/b.png",
        "",
        "..",
        "/etc/passwd",
        "20250101-0123456789abcdef",
        "20250101-0123456789ABCDEF.png",
        "20250101-../../x.png",
        "20250101-0123456789abcdef.png",  # well formed, never stored
    ],
)
def test_ids_not_stored_are_not_found(store: ArtifactStore, bad: str) -> None:
    assert not store.exists(bad)
    for read in (store.get, store.path, store.meta, store.url):
        with pytest.raises(ArtifactNotFoundError):
            read(bad)


def test_signed_url(store: ArtifactStore) -> None:
    artifact_id = store.put(PNG, suffix=".png", meta={"job_id": "j1"})
    url = store.url(artifact_id, expires_s=120)
    if isinstance(store, LocalStore):
        assert url is None  # a local file is sent as bytes, never as a link
        return
    assert url is not None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["120"]
    with urllib.request.urlopen(url, timeout=10) as response:  # anyone with the URL
        assert response.read() == PNG
        assert response.headers["Content-Type"] == "image/png"
    unsigned = url.split("?", 1)[0]
    with pytest.raises(urllib.error.HTTPError) as refused:  # and nobody without it
        urllib.request.urlopen(unsigned, timeout=10)
    assert refused.value.code == 403
    with pytest.raises(ValueError):
        store.url(artifact_id, expires_s=8 * 24 * 3600)


def test_delete(store: ArtifactStore) -> None:
    artifact_id = store.put(PNG, suffix=".png", meta={"job_id": "j1", "index": 0})
    kept = store.put(PNG, suffix=".png", meta={"job_id": "j1", "index": 1})
    cached = store.path(artifact_id)

    store.delete(artifact_id)
    store.delete(artifact_id)  # twice: nothing left to do, no error

    assert not store.exists(artifact_id)
    assert not cached.exists()  # the S3 store's local copy goes too
    with pytest.raises(ArtifactNotFoundError):
        store.get(artifact_id)
    assert store.list_job("j1") == [kept]
    assert store.get(kept) == PNG


def test_ids_before_a_day(store: ArtifactStore, clock: Clock) -> None:
    by_day: dict[date, list[str]] = {}
    for days_ago in (40, 31, 30, 1, 0):
        clock.now = START - timedelta(days=days_ago)
        by_day[clock.now.date()] = [store.put(PNG, suffix=".png") for _ in range(2)]
    cutoff = date(2026, 10, 21)  # 30 days before 2026-11-20

    listed = list(store.ids_before(cutoff))

    expected = [i for day, ids in sorted(by_day.items()) if day < cutoff for i in sorted(ids)]
    assert listed == expected and len(listed) == 4
    assert list(store.ids_before(date(2000, 1, 1))) == []


def test_s3_prefixes_do_not_see_each_other(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path, clock: Clock
) -> None:
    def make(prefix: str) -> S3Store:
        return S3Store(
            bucket=s3_bucket,
            prefix=prefix,
            endpoint_url=s3_endpoint,
            cache_dir=tmp_path / prefix,
            clock=clock,
        )

    one, two = make("deploy-one"), make("deploy-two/")
    artifact_id = one.put(PNG, suffix=".png", meta={"job_id": "shared"})
    assert one.exists(artifact_id) and not two.exists(artifact_id)
    assert two.list_job("shared") == []
    assert list(two.ids_before(date(2100, 1, 1))) == []
    assert list(one.ids_before(date(2100, 1, 1))) == [artifact_id]
