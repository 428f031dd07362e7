"""Artifact storage: images go in, a short id comes out; Redis carries only the id.

Two stores implement one port (:class:`ArtifactStore`): :class:`LocalStore`, a folder, and
:class:`S3Store`, an S3-compatible bucket; ``PROOFROOM_STORE`` picks one
(:func:`store_from_settings`). ``engine.store.retention`` removes what is no longer needed.
No torch here, and no boto3 until an S3 store is made.
"""

from __future__ import annotations

from pathlib import Path

from engine.settings import Settings
from engine.store.base import (
    ArtifactNotFoundError,
    ArtifactStore,
    ArtifactStoreError,
    Clock,
    atomic_write,
    check_id,
    is_id,
)
from engine.store.local import LocalStore
from engine.store.s3 import S3Store

__all__ = [
    "ArtifactNotFoundError",
    "ArtifactStore",
    "ArtifactStoreError",
    "LocalStore",
    "S3Store",
    "atomic_write",
    "cache_dir",
    "check_id",
    "is_id",
    "store_from_settings",
]


def store_from_settings(settings: Settings, *, clock: Clock | None = None) -> ArtifactStore:
    """The artifact store ``settings`` choose (``store``: ``local`` or ``s3``)."""
    extra = {} if clock is None else {"clock": clock}
    if settings.store == "s3":
        return S3Store(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            cache_dir=cache_dir(settings),
            url_expires_s=settings.signed_url_expires_s,
            **extra,
        )
    return LocalStore(settings.artifacts_dir, **extra)


def cache_dir(settings: Settings) -> Path:
    """Where an S3 store keeps the local copies :meth:`S3Store.path` hands out."""
    return settings.data_dir / "artifact-cache"
