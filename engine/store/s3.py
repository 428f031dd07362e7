"""The S3 artifact store: one bucket (AWS S3, MinIO, Cloudflare R2...) shared by every host.

Keys: ``<prefix><yyyy-mm-dd>/<id>`` for the bytes, with the metadata as the object's user
metadata (``x-amz-meta-proofroom``, JSON in ASCII; a ``<key>.json`` object beside when it
is too long for a header), and ``<prefix>jobs/<job id>/<id>``: empty objects, the index of
:meth:`S3Store.list_job`. Credentials come from boto3's own chain (``AWS_ACCESS_KEY_ID``
and ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role) and are never in a message.
boto3 is imported only when an S3 store is made (the ``s3`` extra).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from engine.redaction import redacted_url
from engine.store.base import (
    ArtifactNotFoundError,
    ArtifactStoreError,
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

META = "proofroom"  # the user-metadata field holding the JSON
SIDECAR = "proofroom-sidecar"  # set when the JSON is in <key>.json instead
# S3 allows 2 KB of user metadata per object; past this the JSON goes in an object beside.
MAX_META_HEADER = 1800
MAX_URL_S = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_CREDENTIALS = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken"}
)
T = TypeVar("T")


class S3Store:
    """Artifacts in ``bucket`` under ``prefix``; :meth:`path` downloads into ``cache_dir``."""

    def __init__(
        self,
        *,
        bucket: str,
        cache_dir: Path,
        prefix: str = "",
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str | None = None,
        url_expires_s: int = 3600,
        clock: Clock = utc_now,
    ) -> None:
        if not bucket:
            raise ValueError("the S3 store needs a bucket: set PROOFROOM_S3_BUCKET")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.cache_dir = Path(cache_dir)
        self.url_expires_s = url_expires_s
        self.clock = clock
        shown = redacted_url(endpoint_url)  # shown in errors: never a password in the URL
        self.where = f"S3 bucket `{bucket}`" + (f" at {shown}" if endpoint_url else "")
        self.client = _client(endpoint_url=endpoint_url, region=region)
        # Signed URLs name the host users reach, which may not be the one this host uses
        # (MinIO inside compose): signing makes no request, so a second client costs nothing.
        self.signer = (
            _client(endpoint_url=public_endpoint_url, region=region)
            if public_endpoint_url
            else self.client
        )

    def put(self, data: bytes, *, suffix: str, meta: dict[str, Any] | None = None) -> str:
        """Upload ``data`` (one PUT: an object is whole or absent) and return its id."""
        artifact_id = new_id(suffix, now=self.clock())
        job_id = job_of(meta)
        key = self._key(artifact_id)
        headers: dict[str, str] = {}
        if meta is not None:
            text = json.dumps(meta, ensure_ascii=True, separators=(",", ":"))
            if len(text) <= MAX_META_HEADER:
                headers[META] = text
            else:
                self._call(
                    "store metadata",
                    self.client.put_object,
                    Bucket=self.bucket,
                    Key=key + ".json",
                    Body=text.encode(),
                    ContentType="application/json",
                )
                headers[SIDECAR] = "1"
        content_type = mimetypes.guess_type(f"x{artifact_id[artifact_id.rindex('.') :]}")[0]
        self._call(
            "store an artifact",
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type or "application/octet-stream",
            Metadata=headers,
        )
        if job_id is not None:  # after the object: the index never names a missing artifact
            self._call(
                "index an artifact",
                self.client.put_object,
                Bucket=self.bucket,
                Key=self._job_key(job_id, artifact_id),
                Body=b"",
            )
        return artifact_id

    def get(self, artifact_id: str) -> bytes:
        """The stored bytes."""
        return self._read("read an artifact", self._key(artifact_id))

    def path(self, artifact_id: str) -> Path:
        """A local copy under ``cache_dir``, downloaded on first use; the cache is only a
        cache (delete it any time)."""
        target = self.cache_dir / day_folder(artifact_id) / artifact_id
        if not target.is_file():
            data = self.get(artifact_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
        return target

    def exists(self, artifact_id: str) -> bool:
        """Whether the id is well formed and its object is in the bucket."""
        if not is_id(artifact_id):
            return False
        try:
            self._head(artifact_id)
        except ArtifactNotFoundError:
            return False
        return True

    def meta(self, artifact_id: str) -> dict[str, Any] | None:
        """The metadata given to :meth:`put` (one HEAD; a GET more when it is long)."""
        fields = self._head(artifact_id).get("Metadata", {})
        if fields.get(SIDECAR):
            text = self._read("read metadata", self._key(artifact_id) + ".json").decode()
        elif META in fields:
            text = fields[META]
        else:
            return None
        loaded = json.loads(text)
        return loaded if isinstance(loaded, dict) else None

    def list_job(self, job_id: str) -> list[str]:
        """The ids filed under ``job_id``, sorted."""
        if not is_job_id(job_id):
            return []
        folder = f"{self.prefix}jobs/{job_id}/"
        names = [key[len(folder) :] for key in self._keys(folder)]
        return sorted(name for name in names if is_id(name))

    def url(self, artifact_id: str, *, expires_s: int | None = None) -> str | None:
        """A presigned GET URL of ``artifact_id``, valid ``expires_s`` seconds (default
        ``url_expires_s``, at most a week)."""
        expires = self.url_expires_s if expires_s is None else expires_s
        if not 1 <= expires <= MAX_URL_S:
            raise ValueError(f"a signed URL lives 1 to {MAX_URL_S} seconds, not {expires}")
        self._head(artifact_id)  # an unknown id fails here, not at the user's download
        url = self.signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(artifact_id)},
            ExpiresIn=expires,
        )
        return str(url)

    def delete(self, artifact_id: str) -> None:
        """Remove the object, its metadata object, its index entry and its cached copy."""
        try:
            job_id = job_of(self.meta(artifact_id))
        except (ArtifactNotFoundError, ValueError):  # gone, or metadata not ours
            job_id = None
        key = self._key(artifact_id)
        # The index entry first: a delete cut short leaves an unlisted artifact (that the
        # next prune finds by its day), never an entry naming a missing one. Deleting a
        # missing key succeeds, so deleting twice is fine.
        keys = [] if job_id is None else [self._job_key(job_id, artifact_id)]
        for each in [*keys, key, key + ".json"]:
            self._call(
                "delete an artifact", self.client.delete_object, Bucket=self.bucket, Key=each
            )
        (self.cache_dir / day_folder(artifact_id) / artifact_id).unlink(missing_ok=True)

    def ids_before(self, day: date) -> Iterator[str]:
        """Ids under the day prefixes before ``day``, oldest day first."""
        days: list[str] = []
        pages = self._call(
            "list the bucket",
            self.client.get_paginator("list_objects_v2").paginate,
            Bucket=self.bucket,
            Prefix=self.prefix,
            Delimiter="/",
        )
        for page in self._pages(pages):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix) :].rstrip("/")
                folder_date = folder_day(name)
                if folder_date is not None and folder_date < day:
                    days.append(name)
        for name in sorted(days):
            folder = f"{self.prefix}{name}/"
            for key in self._keys(folder):
                artifact_id = key[len(folder) :]
                if is_id(artifact_id) and day_folder(artifact_id) == name:
                    yield artifact_id

    # -- the bucket ----------------------------------------------------------------------------

    def _key(self, artifact_id: str) -> str:
        return f"{self.prefix}{day_folder(artifact_id)}/{artifact_id}"

    def _job_key(self, job_id: str, artifact_id: str) -> str:
        return f"{self.prefix}jobs/{job_id}/{artifact_id}"

    def _head(self, artifact_id: str) -> dict[str, Any]:
        return dict(
            self._call(
                "read an artifact",
                self.client.head_object,
                Bucket=self.bucket,
                Key=self._key(artifact_id),
            )
        )

    def _read(self, what: str, key: str) -> bytes:
        def download() -> bytes:  # the body streams: reading it can fail like the request
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

        return self._call(what, download)

    def _keys(self, folder: str) -> Iterator[str]:
        pages = self._call(
            "list the bucket",
            self.client.get_paginator("list_objects_v2").paginate,
            Bucket=self.bucket,
            Prefix=folder,
        )
        for page in self._pages(pages):
            for item in page.get("Contents", []):
                yield str(item["Key"])

    def _pages(self, pages: Any) -> Iterator[dict[str, Any]]:
        iterator = iter(pages)
        while True:  # each page is a request: its errors are the store's errors too
            page = self._call("list the bucket", next, iterator, None)
            if page is None:
                return
            yield page

    def _call(self, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
            NoCredentialsError,
        )

        try:
            return call(*args, **kwargs)
        except ClientError as exc:
            self._refused(what, exc)
        except NoCredentialsError:
            raise ArtifactStoreError(
                f"no credentials for the {self.where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
            ) from None
        except BotoCoreError as exc:
            raise ArtifactStoreError(
                f"could not {what}: the {self.where} did not answer ({type(exc).__name__}); "
                "check PROOFROOM_S3_ENDPOINT_URL and the network"
            ) from None

    def _refused(self, what: str, exc: Any) -> NoReturn:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _NOT_FOUND:
            raise ArtifactNotFoundError(f"not in the {self.where}") from None
        if code == "NoSuchBucket":
            hint = "create it, or fix PROOFROOM_S3_BUCKET"
        elif code in _CREDENTIALS:
            hint = "check the AWS credentials and that they may use this bucket"
        else:
            hint = "see the store's own logs"
        raise ArtifactStoreError(
            f"could not {what}: the {self.where} answered {code or 'an error'}; {hint}"
        ) from None


def _client(*, endpoint_url: str | None, region: str | None) -> Any:
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
    except ImportError:
        raise ArtifactStoreError(
            "PROOFROOM_STORE=s3 needs boto3: pip install 'proofroom[s3]'"
        ) from None
    config = Config(
        signature_version="s3v4",
        # MinIO and most S3-compatible servers want the bucket in the path, not the host.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 4, "mode": "standard"},
        # Checksums only where S3 requires them: several S3-compatible servers refuse the
        # newer default ones.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()  # its own: sessions are not thread-safe, clients are
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
