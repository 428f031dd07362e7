"""What every artifact store shares: the port, the ids, the errors, atomic writes.

Ids arrive back from Redis and chat payloads, so they are checked against a strict pattern
before they ever touch a file system or a bucket key. No torch here.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

# <yyyymmdd>-<random hex><suffix>, e.g. 20250301-3f2a9c81d0b4e6a7.png. The day is the UTC
# day of the put: retention reads an artifact's age from its id, the same in every store.
_ID = re.compile(r"^(?P<day>\d{8})-[0-9a-f]{16}(?P<suffix>\.[a-z0-9]{1,8})$")
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
# A job id as ``engine.spec.JobSpec`` allows it; it names a folder (local) or a key part (S3).
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The day folders of a store: <yyyy-mm-dd>.
DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Clock = Callable[[], datetime]


class ArtifactNotFoundError(LookupError):
    """No artifact has this id (or the id is not one we could have issued)."""


class ArtifactStoreError(RuntimeError):
    """The store could not be used (a bucket that cannot be reached, refused credentials);
    the message says which store and what to check, never a secret."""


class ArtifactStore(Protocol):
    """Where rendered files and attached inputs live: a local folder (:class:`LocalStore`)
    or an S3-compatible bucket (:class:`S3Store`), chosen by ``PROOFROOM_STORE``."""

    def put(self, data: bytes, *, suffix: str, meta: dict[str, Any] | None = None) -> str:
        """Store ``data``; return its new artifact id (ends with ``suffix``). A ``job_id``
        in ``meta`` files the artifact under that job (:meth:`list_job`)."""
        ...

    def get(self, artifact_id: str) -> bytes:
        """The bytes of ``artifact_id``; :class:`ArtifactNotFoundError` when unknown."""
        ...

    def path(self, artifact_id: str) -> Path:
        """A local file holding ``artifact_id`` (for uploads that want a path)."""
        ...

    def exists(self, artifact_id: str) -> bool:
        """Whether ``artifact_id`` is stored."""
        ...

    def meta(self, artifact_id: str) -> dict[str, Any] | None:
        """The metadata given to :meth:`put`, or None when it had none."""
        ...

    def list_job(self, job_id: str) -> list[str]:
        """The ids of the artifacts stored with ``job_id`` in their metadata, sorted."""
        ...

    def url(self, artifact_id: str, *, expires_s: int | None = None) -> str | None:
        """A URL anyone holding it can download ``artifact_id`` from, valid ``expires_s``
        seconds (the store's default when None); None when the store has no such URLs."""
        ...

    def delete(self, artifact_id: str) -> None:
        """Remove ``artifact_id`` and its metadata; nothing happens when it is gone already."""
        ...

    def ids_before(self, day: date) -> Iterator[str]:
        """The ids of the artifacts stored on days before ``day`` (UTC), for retention."""
        ...


def check_id(artifact_id: str) -> re.Match[str]:
    """Validate an id we issued; anything else (``/``, ``..``, odd names) is rejected."""
    match = _ID.match(artifact_id) if isinstance(artifact_id, str) else None
    if match is None:
        raise ArtifactNotFoundError(f"not an artifact id: {artifact_id!r}")
    return match


def is_id(artifact_id: object) -> bool:
    """Whether ``artifact_id`` is a well-formed artifact id."""
    return isinstance(artifact_id, str) and _ID.match(artifact_id) is not None


def new_id(suffix: str, *, now: datetime) -> str:
    """A fresh id for something stored at ``now`` (UTC), ending with ``suffix``."""
    if not isinstance(suffix, str) or not _SUFFIX.match(suffix):
        raise ValueError(f"bad artifact suffix {suffix!r}; expected e.g. '.png'")
    return f"{now.astimezone(UTC):%Y%m%d}-{secrets.token_hex(8)}{suffix}"


def day_folder(artifact_id: str) -> str:
    """The ``yyyy-mm-dd`` folder (local) or key part (S3) of ``artifact_id``."""
    day = check_id(artifact_id)["day"]
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


def folder_day(name: str) -> date | None:
    """The day a ``yyyy-mm-dd`` folder name stands for; None for any other name."""
    if not DAY_FOLDER.match(name):
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def job_of(meta: dict[str, Any] | None) -> str | None:
    """The job an artifact is filed under: ``meta["job_id"]``, checked (it names a folder)."""
    job_id = (meta or {}).get("job_id")
    if job_id is None:
        return None
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError(f"bad job id in artifact metadata: {job_id!r}")
    return job_id


def is_job_id(job_id: object) -> bool:
    """Whether ``job_id`` could be a job's id (a lookup by anything else finds nothing)."""
    return isinstance(job_id, str) and _JOB_ID.match(job_id) is not None


def utc_now() -> datetime:
    """The current time in UTC (the default clock of the stores)."""
    return datetime.now(UTC)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename, so a
    reader (another process, a sync tool watching the folder) never sees half a file, and
    two writers of the same file leave one whole copy. A write that fails removes its
    temporary file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:  # a full disk, a timeout: no partial file left to fill it further
        partial.unlink(missing_ok=True)
        raise
