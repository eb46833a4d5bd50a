"""Ships closed slices to S3, gzipped, each byte exactly once, under keys that say where they sit.

A slice is closed `time_slice_wait` seconds after its time span ends. Its
bytes are put in *parts*: consecutive ranges of the slice's whole stream of
committed lines, counted from the first line the slice ever got. A part's key
is a function of the slice and of where the part starts in that stream alone:

    <prefix>logs/<slice>.log.gz                  the part starting at byte 0
    <prefix>logs/<slice>.<start, 12 digits>.log.gz   a later part (late records)

With a `collector_name` (collector.py), the name follows the slice's stem,
`<slice>@<name>.log.gz` and `<slice>@<name>.<start>.log.gz`: collectors that
share a bucket and prefix each ship their own stream of a slice under their
own keys, so none ever takes or reads back another's part. The daily merge
reads every collector's parts of a slice together (shipyard_analytics).

Every put is conditional (`If-None-Match: *`), so no key is ever overwritten,
and carries its range and a SHA-256 of its uncompressed bytes as metadata
(`x-amz-meta-shipyard-{slice,start,end,sha256}`). When the key is taken, the
object there is read back: if it holds a prefix of the bytes about to be put
(a retry after a lost answer, or a crash between the put and the local
clean-up, even with late records appended since), those bytes count as
shipped and only the rest goes on, as the next part. Otherwise the slice's
stream in S3 has moved past what the store remembered (a crash right after a
clean-up): the parts of the slice are listed and the store's origin is moved
past the last of them. So one slice's bytes never land in two objects, and
late records never replace shipped ones.

The gzip bytes carry no timestamp (same content, same bytes). The local file
is cut, removed, or kept gzipped for `retention_days`, only after S3 holds
the part. After any failure the bucket is checked (and created, with
`create_bucket`) again before the next put; the lifecycle rule is set where
the key may set it, and only warned about where it may not.

Several uploaders (one per `[[match]]` of type s3) may share a bucket under
different prefixes: each keeps its own lifecycle rule, and a shared lock keeps
their read-modify-write of the bucket's lifecycle configuration apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .config import Between, Matches, OneOf, Setting
from .durable import write_atomically
from .slices import SliceStore, StoreError

log = logging.getLogger("shipyard_logs.uploader")

# Between a slice's stem and the collector's name in a key: no host name
# (slices.safe_host) and no collector name holds it, so it parses back.
COLLECTOR_SEPARATOR = "@"

RULE_ID = "shipyard-archive-logs"
STORAGE_CLASSES = (
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
)
_CREDENTIAL = Matches(r"[!-~]*", "printable ASCII without spaces", 1024)
S3_DEFAULTS: dict[str, Any] = {
    "bucket": Setting(
        "",
        Matches(
            r"([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?",
            "empty or a bucket name of a-z 0-9 . - from 3 characters on",
            63,
        ),
    ),
    "prefix": Setting("", Matches(r"[^\x00-\x1f\x7f]*", "free of control characters", 512)),
    "endpoint_url": Setting(
        "", Matches(r"(https?://[^\s/?#]+(/[^\s?#]*)?)?", "empty or an http(s):// URL", 2048)
    ),
    "region": Setting("us-east-1", Matches(r"([a-z0-9-]+)?", "empty or a region name", 32)),
    "access_key_id": Setting("", _CREDENTIAL, secret=True),
    "secret_access_key": Setting("", _CREDENTIAL, secret=True),
    "access_key_id_file": "",
    "secret_access_key_file": "",
    "create_bucket": False,
    "lifecycle": True,
    "archive_after_days": Setting(7, Between(1, 36500)),
    "archive_storage_class": Setting("GLACIER", OneOf(STORAGE_CLASSES)),
    "retention_days": Setting(0.0, Between(0, 3650)),
    # Seconds; a round with nothing closed makes no S3 call, but a floor keeps
    # a typo from turning a failing bucket check into a hot loop.
    "upload_interval": Setting(60.0, Between(0.1, 86400)),
    "retry_max_interval": Setting(300.0, Between(0.1, 86400)),
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
    collector: str = ""  # the collector's name in its keys; "" for none

    def __repr__(self) -> str:
        # Never let a secret reach a log line through a repr.
        return f"S3Settings(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"  # noqa: E501


def s3_client(
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    timeouts: tuple[float, float],
    attempts: int,
) -> Any:  # noqa: ANN401 - boto3 clients are untyped
    """A boto3 S3 client: path-style addressing when an endpoint is given (moto, MinIO).

    Without keys boto3's own chain applies (environment, profile, instance role).
    """
    import boto3
    from botocore.config import Config

    extra: dict[str, Any] = {}
    if access_key_id:
        extra["aws_access_key_id"] = access_key_id
        extra["aws_secret_access_key"] = secret_access_key
    config = Config(
        connect_timeout=timeouts[0],
        read_timeout=timeouts[1],
        retries={"max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        config=config,
        **extra,
    )


def make_client(settings: S3Settings) -> Any:  # noqa: ANN401 - boto3 clients are untyped
    # One attempt per call: the uploader's own loop retries, with its backoff.
    return s3_client(
        settings.endpoint_url,
        settings.region,
        settings.access_key_id,
        settings.secret_access_key,
        timeouts=(3, 30),
        attempts=1,
    )


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def ensure_bucket(client: Any, settings: S3Settings) -> None:  # noqa: ANN401
    try:
        client.head_bucket(Bucket=settings.bucket)
    except Exception as exc:
        if not settings.create_bucket or error_code(exc) not in ("404", "NoSuchBucket"):
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
        if error_code(exc) != "NoSuchLifecycleConfiguration":
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


class PartConflictError(Exception):
    """The part's key holds bytes that are not a prefix of this part's."""


def part_key(prefix: str, rel: str, start: int, collector: str = "") -> str:
    """The key of the part of slice `rel` that starts at byte `start` of its stream."""
    stem = rel.removesuffix(".log") + (f"{COLLECTOR_SEPARATOR}{collector}" if collector else "")
    if start == 0:
        return f"{prefix}{stem}.log.gz"
    return f"{prefix}{stem}.{start:012d}.log.gz"


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def put_part(
    client: Any,  # noqa: ANN401 - boto3 clients are untyped
    settings: S3Settings,
    rel: str,
    start: int,
    data: bytes,
) -> tuple[str, int]:
    """Put the bytes of slice `rel` from `start` on; (key, bytes now shipped).

    The count is less than len(data) when an earlier attempt already shipped a
    shorter part under this key: the rest is the next part.
    """
    key = part_key(settings.prefix, rel, start, settings.collector)
    end = start + len(data)
    try:
        client.put_object(
            Bucket=settings.bucket,
            Key=key,
            Body=gzip_bytes(data),
            ContentType="text/plain",
            ContentEncoding="gzip",
            IfNoneMatch="*",
            Metadata={
                "shipyard-slice": rel,
                "shipyard-start": str(start),
                "shipyard-end": str(end),
                "shipyard-sha256": _sha256(data),
            },
        )
        return key, len(data)
    except Exception as exc:
        if error_code(exc) not in ("PreconditionFailed", "412"):
            raise
    shipped = _shipped_prefix(client, settings, key, rel, start, data)
    if shipped is None:
        raise PartConflictError(key)
    return key, shipped


def _part_range(head: dict[str, Any], rel: str) -> tuple[int, int, str] | None:
    """(start, end, sha256) from a part's metadata; None for an object shipyard did not put."""
    meta = head.get("Metadata") or {}
    try:
        if meta.get("shipyard-slice") != rel:
            return None
        return int(meta["shipyard-start"]), int(meta["shipyard-end"]), meta["shipyard-sha256"]
    except (KeyError, ValueError):
        return None


def _shipped_prefix(
    client: Any,  # noqa: ANN401 - boto3 clients are untyped
    settings: S3Settings,
    key: str,
    rel: str,
    start: int,
    data: bytes,
) -> int | None:
    """How many of `data`'s first bytes the object at `key` already holds, if it holds a prefix."""
    found = _part_range(client.head_object(Bucket=settings.bucket, Key=key), rel)
    if found is None or found[0] != start:
        return None
    length = found[1] - start
    if 0 < length <= len(data) and _sha256(memoryview(data)[:length]) == found[2]:
        return length
    return None


def stream_end(client: Any, settings: S3Settings, rel: str) -> int:  # noqa: ANN401
    """Where the slice's stream ends in S3: past every part of it that the bucket holds.

    A key taken by an object without shipyard's metadata (put by hand, or by
    an older collector) counts as one byte, so it is never reused.
    """
    base = part_key(settings.prefix, rel, 0, settings.collector)
    stem = base.removesuffix(".log.gz") + "."
    later = re.compile(re.escape(stem) + r"(\d{12})\.log\.gz")
    starts: list[tuple[int, str]] = []
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=stem)
    for page in pages:
        for item in page.get("Contents", []):
            name = item["Key"]
            found = later.fullmatch(name)
            if name == base or found:
                starts.append((int(found[1]) if found else 0, name))
    end = 0
    for start, name in sorted(starts):
        part = _part_range(client.head_object(Bucket=settings.bucket, Key=name), rel)
        end = max(end, part[1] if part and part[0] == start else start + 1)
    return end


@dataclass
class UploadStats:
    """What the collector's stats file reports of one uploader."""

    last_key: str = ""
    last_time: float = 0.0
    errors: int = 0


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
        self.stats = UploadStats()
        self._client: Any = None
        self._failures: dict[str, int] = {}
        self._next_try: dict[str, float] = {}
        self._bucket_ready = False
        self._bucket_failures = 0
        self._bucket_next_try = 0.0
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
        now = time.time()
        if not self._bucket_ready:
            if now < self._bucket_next_try:
                return
            try:
                async with self._bucket_lock:
                    await asyncio.to_thread(self._prepare_bucket)
            except Exception as exc:
                self._bucket_failures += 1
                delay = self._backoff(self._bucket_failures)
                self._bucket_next_try = time.time() + delay
                log.warning(
                    "bucket %s not ready (next check in %.0fs): %s",
                    self.settings.bucket,
                    delay,
                    _describe(exc),
                )
                return
            self._bucket_ready = True
            self._bucket_failures = 0
            # S3 is back: what waited for it goes now, not after its own back-off.
            self._next_try.clear()
        for rel in await self.writer(self.store.slice_files):
            if self._closed(rel, now) and self._next_try.get(rel, 0.0) <= now:
                await self._upload(rel)
                if not self._bucket_ready:
                    break  # the round's first failure: check the bucket before the next put
        if self.settings.retention_days > 0:
            await asyncio.to_thread(self._expire_local_copies, now)

    def _prepare_bucket(self) -> None:
        ensure_bucket(self._client, self.settings)
        if not self.settings.lifecycle:
            return
        try:
            ensure_lifecycle(self._client, self.settings)
        except Exception as exc:
            # Archiving is a cost saving; shipping the logs is the job.
            log.warning(
                "bucket %s: cannot set lifecycle rule %s (%s); uploading without it",
                self.settings.bucket,
                self.settings.rule_id,
                _describe(exc),
            )

    def _closed(self, rel: str, now: float) -> bool:
        parsed = self.store.layout.parse(rel)
        if parsed is None:
            return False
        end = parsed[1] + self.store.layout.seconds
        return now >= end + self.time_slice_wait

    async def _upload(self, rel: str) -> None:
        """Ship a closed slice's committed bytes, part by part, until none are left."""
        while True:
            origin, size = await self.writer(self.store.seal, rel)
            if size == 0:
                # Nothing committed (a first write that failed leaves an empty
                # file): nothing to ship, and the file goes.
                with contextlib.suppress(StoreError):
                    await self.writer(self.store.release, rel, 0)
                return
            try:
                data = await asyncio.to_thread(_read, self.store.root / rel, size)
                key, shipped = await asyncio.to_thread(
                    put_part, self._client, self.settings, rel, origin, data
                )
            except PartConflictError as exc:
                if not await self._rebase(rel, origin, exc):
                    return
                continue
            except Exception as exc:
                self._failed(rel, exc)
                return
            local = self.store.root / key.removeprefix(self.settings.prefix)
            copy = await self._keep_copy(local, data[:shipped])
            try:
                await self.writer(self.store.release, rel, shipped)
            except StoreError as exc:
                # S3 holds the part; the next attempt finds it there and
                # releases it then, without a second object.
                self._failed(rel, exc)
                return
            if copy is not None:
                await self._keep_copy(local, copy, last_try=True)
            self._failures.pop(rel, None)
            self._next_try.pop(rel, None)
            self.stats.last_key, self.stats.last_time = key, time.time()
            log.info(
                "uploaded %s bytes %d-%d to s3://%s/%s",
                rel,
                origin,
                origin + shipped,
                self.settings.bucket,
                key,
            )
            if shipped == size:
                return

    async def _keep_copy(self, local: Path, data: bytes, last_try: bool = False) -> bytes | None:
        """Keep a shipped part gzipped for retention_days; the gzip when there was no room.

        On a full disk the copy is written after the release, which frees the
        slice's own (larger) bytes; if there is no room even then, S3 alone
        holds the part, and a warning says so.
        """
        if self.settings.retention_days <= 0:
            return None
        body = data if last_try else await asyncio.to_thread(gzip_bytes, data)
        try:
            await asyncio.to_thread(write_atomically, local, body)
        except OSError as exc:
            if last_try:
                log.warning("no local copy of %s kept (it is in S3): %s", local.name, exc)
                return None
            return body
        return None

    async def _rebase(self, rel: str, origin: int, conflict: PartConflictError) -> bool:
        """Move the slice's origin past what S3 holds; False when that failed."""
        try:
            end = await asyncio.to_thread(stream_end, self._client, self.settings, rel)
            if end <= origin:
                raise PartConflictError(f"{conflict} holds other bytes and no later part exists")
            await self.writer(self.store.rebase, rel, end)
        except Exception as exc:
            self._failed(rel, exc)
            return False
        log.warning(
            "%s: %s holds other bytes; S3 has this slice up to byte %d, the rest goes from there",
            rel,
            conflict,
            end,
        )
        return True

    def _failed(self, rel: str, exc: Exception) -> None:
        failures = self._failures.get(rel, 0) + 1
        self._failures[rel] = failures
        delay = self._backoff(failures)
        self._next_try[rel] = time.time() + delay
        self.stats.errors += 1
        if not isinstance(exc, StoreError):
            self._bucket_ready = False  # it may be gone: check it before the next put
        log.warning(
            "upload of %s failed (attempt %d, next in %.0fs): %s",
            rel,
            failures,
            delay,
            _describe(exc),
        )

    def _expire_local_copies(self, now: float) -> None:
        horizon = now - self.settings.retention_days * 86400
        for path in (self.store.root / "logs").rglob("*.log.gz"):
            if path.stat().st_mtime < horizon:
                path.unlink(missing_ok=True)


def _describe(exc: Exception) -> str:
    """An S3 error by its code, which is what an operator can look up."""
    code = error_code(exc)
    return f"{code}: {exc}" if code and code not in str(exc) else str(exc)


def _read(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)
