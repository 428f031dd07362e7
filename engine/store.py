"""Artifact storage: images go in, a short id comes out; Redis carries only the id.

Ids arrive back from Redis and chat payloads, so they are checked against a strict
pattern before they ever touch the file system. No torch here.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from engine.settings import Settings

# <yyyymmdd>-<random hex><suffix>, e.g. 20250301-3f2a9c81d0b4e6a7.png
_ID = re.compile(r"^(?P<day>\d{8})-[0-9a-f]{16}(?P<suffix>\.[a-z0-9]{1,8})$")
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


class ArtifactNotFoundError(LookupError):
    """No artifact has this id (or the id is not one we could have issued)."""


class ArtifactStore(Protocol):
    """Where rendered files live. Local directory today; S3-compatible later."""

    def put(self, data: bytes, *, suffix: str, meta: dict[str, Any] | None = None) -> str:
        """Store ``data``; return its new artifact id (ends with ``suffix``)."""
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


def check_id(artifact_id: str) -> re.Match[str]:
    """Validate an id we issued; anything else (``/``, ``..``, odd names) is rejected."""
    match = _ID.match(artifact_id) if isinstance(artifact_id, str) else None
    if match is None:
        raise ArtifactNotFoundError(f"not an artifact id: {artifact_id!r}")
    return match


class LocalStore:
    """Files under ``root/<yyyy-mm-dd>/<id>``, with optional ``<id>.json`` metadata beside."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def put(self, data: bytes, *, suffix: str, meta: dict[str, Any] | None = None) -> str:
        """Write ``data`` atomically and return its id."""
        if not _SUFFIX.match(suffix):
            raise ValueError(f"bad artifact suffix {suffix!r}; expected e.g. '.png'")
        now = datetime.now(UTC)
        artifact_id = f"{now:%Y%m%d}-{secrets.token_hex(8)}{suffix}"
        target = self._file(artifact_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if meta is not None:
            atomic_write(target.with_name(target.name + ".json"), json.dumps(meta).encode())
        atomic_write(target, data)
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
        try:
            return self._file(artifact_id).is_file()
        except ArtifactNotFoundError:
            return False

    def meta(self, artifact_id: str) -> dict[str, Any] | None:
        """The metadata given to :meth:`put`, or None."""
        side = self._file(artifact_id)
        side = side.with_name(side.name + ".json")
        return json.loads(side.read_text()) if side.is_file() else None

    def _file(self, artifact_id: str) -> Path:
        day = check_id(artifact_id)["day"]
        return self.root / f"{day[:4]}-{day[4:6]}-{day[6:]}" / artifact_id


def store_from_settings(settings: Settings) -> ArtifactStore:
    """The artifact store configured by ``settings`` (a local directory for now)."""
    return LocalStore(settings.artifacts_dir)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename, so a
    reader (another process, a sync tool watching the folder) never sees half a file, and
    two writers of the same file leave one whole copy."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)
