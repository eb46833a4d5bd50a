"""Where the merged day goes: Hive-style keys, and targets that write only what changed.

    <warehouse>/logs/dt=YYYY-MM-DD/tag=<tag>/part-0.parquet
    <warehouse>/reports/dt=YYYY-MM-DD/daily.json

The keys are a function of the day and the tag alone, and an object is
replaced only when its bytes differ (compared by SHA-256: the file itself
locally, object metadata on S3, since multipart ETags are not digests). A
second merge of the same slices therefore changes no object. Every object
appears whole: a local file is renamed into place after an fsync, an S3 put
is atomic. Part files of a tag the day no longer has are removed last.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from shipyard_logs.durable import fsync_dir

from .schema import TABLE

PART_NAME = "part-0.parquet"
DIGEST_KEY = "sha256"  # S3 user metadata: x-amz-meta-sha256
# Hive's FileUtils.escapePathName: these, and control characters, become %XX.
_HIVE_UNSAFE = set("\"#%'*/:=?\\\x7f{[]^")


def escape_partition(value: str) -> str:
    return "".join(
        f"%{ord(ch):02X}" if ch in _HIVE_UNSAFE or ord(ch) < 0x20 else ch for ch in value
    )


def day_prefix(day: date) -> str:
    return f"{TABLE}/dt={day.isoformat()}/"


def part_key(day: date, tag: str) -> str:
    return f"{day_prefix(day)}tag={escape_partition(tag)}/{PART_NAME}"


def report_key(day: date) -> str:
    return f"reports/dt={day.isoformat()}/daily.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Target(Protocol):
    def uri(self, key: str = "") -> str: ...
    def put_if_changed(self, key: str, source: Path) -> bool: ...
    def keys(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def read(self, key: str) -> bytes | None: ...


class LocalTarget:
    def __init__(self, root: Path) -> None:
        self.root = root

    def uri(self, key: str = "") -> str:
        return str(self.root / key)

    def put_if_changed(self, key: str, source: Path) -> bool:
        path = self.root / key
        same_size = path.is_file() and path.stat().st_size == source.stat().st_size
        if same_size and sha256_file(path) == sha256_file(source):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        # A dot name: Spark, Hive, Athena and DuckDB globs all skip it while it is written.
        temp = path.with_name(f".{path.name}.tmp")
        with source.open("rb") as src, temp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        temp.replace(path)
        fsync_dir(path.parent)
        return True

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        path = self.root / key
        path.unlink(missing_ok=True)
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None


class S3Target:
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:  # noqa: ANN401
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _digest(self, key: str) -> str | None:
        from .s3 import error_code

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return str(head.get("Metadata", {}).get(DIGEST_KEY, ""))

    def put_if_changed(self, key: str, source: Path) -> bool:
        digest = sha256_file(source)
        if self._digest(key) == digest:
            return False
        content_type = (
            "application/json" if key.endswith(".json") else "application/vnd.apache.parquet"
        )
        self.client.upload_file(
            str(source),
            self.bucket,
            self.prefix + key,
            ExtraArgs={"Metadata": {DIGEST_KEY: digest}, "ContentType": content_type},
        )
        return True

    def keys(self, prefix: str) -> list[str]:
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        for page in pages:
            found += [obj["Key"].removeprefix(self.prefix) for obj in page.get("Contents", [])]
        return sorted(found)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def read(self, key: str) -> bytes | None:
        from .s3 import error_code

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise


def publish_day(target: Target, day: date, staged: dict[str, Path]) -> dict[str, bool]:
    """Put each tag's file where it belongs (if changed), then drop tags the day lost.

    Returns each key touched or checked, and whether it changed.
    """
    changed = {
        part_key(day, tag): target.put_if_changed(part_key(day, tag), path)
        for tag, path in staged.items()
    }
    for key in target.keys(day_prefix(day)):
        if key.endswith("/" + PART_NAME) and key not in changed:
            target.delete(key)
            changed[key] = True
    return changed
