"""The local artifact store: files in a folder, for one host or a shared volume."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from engine.store.base import (
    ArtifactNotFoundError,
    Clock,
    atomic_write,
    day_folder,
    folder_day,
    is_id,
    is_job_id,
    job_of,
    new_id,
    utc_now,
)

JOBS = "jobs"  # root/jobs/<job id>/<artifact id>: empty files, the index of list_job
# Written once the index holds every artifact put before the index existed (see _indexed).
INDEXED = ".indexed"


class LocalStore:
    """Files under ``root/<yyyy-mm-dd>/<id>``, with optional ``<id>.json`` metadata beside,
    and an index of the artifacts of each job under ``root/jobs/<job id>/``."""

    def __init__(self, root: Path | str, *, clock: Clock = utc_now) -> None:
        self.root = Path(root)
        self.clock = clock

    def put(self, data: bytes, *, suffix: str, meta: dict[str, Any] | None = None) -> str:
        """Write ``data`` atomically and return its id; when that fails, nothing of it is
        left in the folder."""
        artifact_id = new_id(suffix, now=self.clock())
        job_id = job_of(meta)
        target = self._file(artifact_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if meta is not None:
                atomic_write(_sidecar(target), json.dumps(meta).encode())
            atomic_write(target, data)
            if job_id is not None:  # after the file: the index never names a missing artifact
                self._mark(job_id, artifact_id)
        except BaseException:
            # A put that fails (a full disk, a write cut short by a job timeout) leaves
            # nothing behind: no file under an id nobody was given, no metadata without
            # its file. atomic_write has removed its own partial file already.
            self._discard(artifact_id, job_id)
            raise
        return artifact_id

    def get(self, artifact_id: str) -> bytes:
        """The stored bytes."""
        try:
            return self._file(artifact_id).read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no artifact {artifact_id}") from None

    def path(self, artifact_id: str) -> Path:
        """The file of ``artifact_id`` (it must exist)."""
        target = self._file(artifact_id)
        if not target.is_file():
            raise ArtifactNotFoundError(f"no artifact {artifact_id}")
        return target

    def exists(self, artifact_id: str) -> bool:
        """Whether the id is well formed and its file is present."""
        return is_id(artifact_id) and self._file(artifact_id).is_file()

    def meta(self, artifact_id: str) -> dict[str, Any] | None:
        """The metadata given to :meth:`put`, or None."""
        side = _sidecar(self.path(artifact_id))
        try:
            loaded = json.loads(side.read_text())
        except FileNotFoundError:
            return None
        return loaded if isinstance(loaded, dict) else None

    def list_job(self, job_id: str) -> list[str]:
        """The ids filed under ``job_id``, sorted (artifacts from before the index included)."""
        if not is_job_id(job_id):
            return []
        self._indexed()
        folder = self.root / JOBS / job_id
        names = os.listdir(folder) if folder.is_dir() else []
        return sorted(name for name in names if is_id(name) and self.exists(name))

    def url(self, artifact_id: str, *, expires_s: int | None = None) -> str | None:
        """None: a local file has no URL to hand out (the caller sends the bytes)."""
        self.path(artifact_id)  # unknown ids fail as in every store
        return None

    def delete(self, artifact_id: str) -> None:
        """Remove the file, its metadata and its index entry, and folders left empty."""
        target = self._file(artifact_id)
        try:
            job_id = job_of(self.meta(artifact_id))
        except (ArtifactNotFoundError, ValueError):  # gone, or metadata not ours
            job_id = None
        if job_id is not None:  # first, as in S3Store.delete
            marker = self.root / JOBS / job_id / artifact_id
            marker.unlink(missing_ok=True)
            _remove_empty(marker.parent)
        target.unlink(missing_ok=True)
        _sidecar(target).unlink(missing_ok=True)
        _remove_empty(target.parent)

    def ids_before(self, day: date) -> Iterator[str]:
        """Ids in the day folders before ``day``, oldest day first."""
        folders = os.listdir(self.root) if self.root.is_dir() else []
        for name in sorted(folders):
            folder_date = folder_day(name)
            if folder_date is None or folder_date >= day:
                continue
            for file in sorted(os.listdir(self.root / name)):
                if is_id(file) and day_folder(file) == name:
                    yield file

    def _file(self, artifact_id: str) -> Path:
        return self.root / day_folder(artifact_id) / artifact_id

    def _discard(self, artifact_id: str, job_id: str | None) -> None:
        """Remove what a failed :meth:`put` wrote. Folders stay: another writer may be
        about to put a file in the same day folder."""
        target = self._file(artifact_id)
        paths = [target, _sidecar(target)]
        if job_id is not None:
            paths.append(self.root / JOBS / job_id / artifact_id)
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def _mark(self, job_id: str, artifact_id: str) -> None:
        folder = self.root / JOBS / job_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / artifact_id).touch()

    def _indexed(self) -> None:
        """File the artifacts stored before this store kept an index (their metadata
        names their job) under their jobs, once: a folder written by an older version
        lists by job like a new one."""
        flag = self.root / JOBS / INDEXED
        if flag.exists():
            return
        for day in sorted(os.listdir(self.root)) if self.root.is_dir() else []:
            if folder_day(day) is None:
                continue
            for name in os.listdir(self.root / day):
                if not is_id(name):
                    continue
                try:
                    job_id = job_of(self.meta(name))
                except (ArtifactNotFoundError, ValueError):
                    continue
                if job_id is not None:
                    self._mark(job_id, name)
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or gone): either way nothing to do
        folder.rmdir()
