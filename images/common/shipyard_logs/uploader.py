"""Ships closed slices to S3, gzipped, under keys derived from the slice alone.

A slice is closed `time_slice_wait` seconds after its time span ends. Its
object key is `<prefix>logs/<slice>.log.gz`; the gzip bytes carry no
timestamp, so a retry puts the same bytes under the same key. When that key
already holds other bytes (records that arrived after the slice was shipped
and removed), the newcomers go to `<slice>.<md5 prefix>.log.gz`, again a
function of the content alone. The local file is removed, or kept gzipped for
`retention_days`, only after S3 accepted the put.

Several uploaders (one per `[[match]]` of type s3) may share a bucket under
different prefixes: each keeps its own lifecycle rule, and a shared lock keeps
their read-modify-write of the bucket's lifecycle configuration apart.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .durable import write_atomically
from .slices import SliceStore

log = logging.getLogger("shipyard_logs.uploader")

RULE_ID = "shipyard-archive-logs"
S3_DEFAULTS: dict[str, Any] = {
    "bucket": "",
    "prefix": "",
    "endpoint_url": "",
    "region": "us-east-1",
    "access_key_id": "",
    "secret_access_key": "",
    "access_key_id_file": "",
    "secret_access_key_file": "",
    "create_bucket": False,
    "lifecycle": True,
    "archive_after_days": 7,
    "archive_storage_class": "GLACIER",
    "retention_days": 0.0,
    "upload_interval": 60.0,
    "retry_max_interval": 300.0,
}
T = TypeVar("T")
WriterCall = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    create_bucket: bool = False
    lifecycle: bool = True
    archive_after_days: int = 7
    archive_storage_class: str = "GLACIER"
    retention_days: float = 0.0
    upload_interval: float = 60.0
    retry_max_interval: float = 300.0
    rule_id: str = RULE_ID

    def __repr__(self) -> str:
        # Never let a secret reach a log line through a repr.
        return f"S3Settings(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"  # noqa: E501


def make_client(settings: S3Settings) -> Any:  # noqa: ANN401 - boto3 clients are untyped
    import boto3
    from botocore.config import Config

    extra: dict[str, Any] = {}
    if settings.access_key_id:
        extra["aws_access_key_id"] = settings.access_key_id
        extra["aws_secret_access_key"] = settings.secret_access_key
    config = Config(
        connect_timeout=3,
        read_timeout=30,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region or None,
        config=config,
        **extra,
    )


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def ensure_bucket(client: Any, settings: S3Settings) -> None:  # noqa: ANN401
    try:
        client.head_bucket(Bucket=settings.bucket)
    except Exception as exc:
        if not settings.create_bucket or _error_code(exc) not in ("404", "NoSuchBucket"):
            raise
        kwargs: dict[str, Any] = {"Bucket": settings.bucket}
        if settings.region and settings.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
        client.create_bucket(**kwargs)
        log.info("created bucket %s", settings.bucket)


def lifecycle_rule(settings: S3Settings) -> dict[str, Any]:
    return {
        "ID": settings.rule_id,
        "Filter": {"Prefix": f"{settings.prefix}logs/"},
        "Status": "Enabled",
        "Transitions": [
            {"Days": settings.archive_after_days, "StorageClass": settings.archive_storage_class}
        ],
    }


def ensure_lifecycle(client: Any, settings: S3Settings) -> None:  # noqa: ANN401
    """Add or update shipyard's archive rule, leaving the bucket's other rules alone."""
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    except Exception as exc:
        if _error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    wanted = lifecycle_rule(settings)
    current = next((r for r in rules if r.get("ID") == settings.rule_id), None)
    if current is not None and all(current.get(k) == v for k, v in wanted.items()):
        return
    others = [r for r in rules if r.get("ID") != settings.rule_id]
    client.put_bucket_lifecycle_configuration(
        Bucket=settings.bucket, LifecycleConfiguration={"Rules": [*others, wanted]}
    )
    log.info(
        "lifecycle rule %s: %s objects to %s after %d days",
        settings.rule_id,
        wanted["Filter"],
        settings.archive_storage_class,
        settings.archive_after_days,
    )


def _remote_md5(client: Any, bucket: str, key: str) -> str | None:  # noqa: ANN401
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return str(head.get("ETag", "")).strip('"')


def put_slice(client: Any, settings: S3Settings, rel: str, body: bytes) -> str:  # noqa: ANN401
    """Put one gzipped slice; returns the key now holding exactly these bytes."""
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    base = f"{settings.prefix}{rel}.gz"
    part = f"{settings.prefix}{rel.removesuffix('.log')}.{md5[:12]}.log.gz"
    for key in (base, part):
        remote = _remote_md5(client, settings.bucket, key)
        if remote == md5:
            return key  # an earlier attempt already landed
        if remote is None:
            client.put_object(
                Bucket=settings.bucket,
                Key=key,
                Body=body,
                ContentType="text/plain",
                ContentEncoding="gzip",
            )
            return key
    raise RuntimeError(f"{part} exists with other content")


class Uploader:
    """Runs inside the collector's event loop; S3 calls and gzip run on worker threads."""

    def __init__(
        self,
        store: SliceStore,
        writer: WriterCall,
        settings: S3Settings,
        time_slice_wait: float,
        bucket_lock: asyncio.Lock | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.settings = settings
        self.time_slice_wait = time_slice_wait
        self._client: Any = None
        self._failures: dict[str, int] = {}
        self._next_try: dict[str, float] = {}
        self._bucket_ready = False
        self._bucket_lock = bucket_lock or asyncio.Lock()

    def _backoff(self, failures: int) -> float:
        return min(
            self.settings.upload_interval * 2 ** (failures - 1), self.settings.retry_max_interval
        )

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("upload round failed")
            await asyncio.sleep(self.settings.upload_interval)

    async def run_once(self) -> None:
        if self._client is None:
            self._client = await asyncio.to_thread(make_client, self.settings)
        if not self._bucket_ready:
            try:
                async with self._bucket_lock:
                    await asyncio.to_thread(self._prepare_bucket)
            except Exception as exc:
                log.warning("bucket %s not ready: %s", self.settings.bucket, exc)
                return
            self._bucket_ready = True
        now = time.time()
        for rel in await self.writer(self.store.slice_files):
            if self._closed(rel, now) and self._next_try.get(rel, 0.0) <= now:
                await self._upload(rel)
        if self.settings.retention_days > 0:
            await asyncio.to_thread(self._expire_local_copies, now)

    def _prepare_bucket(self) -> None:
        ensure_bucket(self._client, self.settings)
        if self.settings.lifecycle:
            ensure_lifecycle(self._client, self.settings)

    def _closed(self, rel: str, now: float) -> bool:
        parsed = self.store.layout.parse(rel)
        if parsed is None:
            return False
        end = parsed[1] + self.store.layout.seconds
        return now >= end + self.time_slice_wait

    async def _upload(self, rel: str) -> None:
        size = await self.writer(self.store.seal, rel)
        path = self.store.root / rel
        try:
            body = await asyncio.to_thread(_read_gzip, path, size)
            key = await asyncio.to_thread(put_slice, self._client, self.settings, rel, body)
        except Exception as exc:
            failures = self._failures.get(rel, 0) + 1
            self._failures[rel] = failures
            delay = self._backoff(failures)
            self._next_try[rel] = time.time() + delay
            log.warning(
                "upload of %s failed (attempt %d, next in %.0fs): %s", rel, failures, delay, exc
            )
            return
        if self.settings.retention_days > 0:
            local = self.store.root / key.removeprefix(self.settings.prefix)
            await asyncio.to_thread(write_atomically, local, body)
        await self.writer(self.store.release, rel, size)
        self._failures.pop(rel, None)
        self._next_try.pop(rel, None)
        log.info("uploaded %s (%d bytes) to s3://%s/%s", rel, size, self.settings.bucket, key)

    def _expire_local_copies(self, now: float) -> None:
        horizon = now - self.settings.retention_days * 86400
        for path in (self.store.root / "logs").rglob("*.log.gz"):
            if path.stat().st_mtime < horizon:
                path.unlink(missing_ok=True)


def _read_gzip(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        return gzip_bytes(handle.read(size))
