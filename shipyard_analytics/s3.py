"""S3 access for the job: one client, bucket checks, downloads, and the warehouse lifecycle rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard_logs.uploader import error_code, s3_client

from .errors import JobError, NoInputError

WAREHOUSE_RULE_ID = "shipyard-archive-warehouse"


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id_file: str = ""
    secret_access_key_file: str = ""


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, `prefix/`); the prefix may be empty."""
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise JobError(f"{uri!r} names no bucket")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def _secret(path: str, what: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise JobError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not value:
        raise JobError(f"the {what} file {path} is empty")
    return value


def client(options: S3Options) -> Any:  # noqa: ANN401 - boto3 clients are untyped
    if bool(options.access_key_id_file) != bool(options.secret_access_key_file):
        raise JobError("give both --access-key-id-file and --secret-access-key-file, or neither")
    key_id = secret = ""
    if options.access_key_id_file:
        key_id = _secret(options.access_key_id_file, "access key id")
        secret = _secret(options.secret_access_key_file, "secret key")
    # A daily job can wait: longer reads and three attempts per call.
    return s3_client(
        options.endpoint_url, options.region, key_id, secret, timeouts=(5, 60), attempts=3
    )


def check_bucket(client: Any, bucket: str) -> None:  # noqa: ANN401
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            raise NoInputError(f"no such bucket: {bucket}") from None
        if error_code(exc) in ("403", "AccessDenied"):
            raise NoInputError(f"access to bucket {bucket} denied") from None
        raise JobError(f"bucket {bucket}: {exc}") from None


def download(client: Any, bucket: str, key: str, target: Path) -> None:  # noqa: ANN401
    target.parent.mkdir(parents=True, exist_ok=True)
    client.download_file(bucket, key, str(target))


def ensure_lifecycle(
    client: Any,  # noqa: ANN401
    bucket: str,
    prefix: str,
    days: int,
    storage_class: str,
) -> None:
    """Keep a rule moving the warehouse table `<prefix>logs/` to `storage_class` after `days`.

    The collector's own rule for the slice prefix is the same read-modify-write
    under another id: both leave the bucket's other rules alone.
    """
    from shipyard_logs.uploader import S3Settings
    from shipyard_logs.uploader import ensure_lifecycle as keep_rule

    keep_rule(
        client,
        S3Settings(
            bucket=bucket,
            prefix=prefix,
            archive_after_days=days,
            archive_storage_class=storage_class,
            rule_id=WAREHOUSE_RULE_ID,
        ),
    )
