"""Finding one day's slices, in the collector's store or in its S3 bucket.

A slice is named by the collector's `time_slice_format`
(`logs/%Y%m%d/${host}-%H.log` by default); the uploader ships it as
`.log.gz`, and records that arrived after a slice was shipped as a later
part `<slice>.<start, 12 digits>.log.gz`. A collector with a
`collector_name` puts it after the slice's stem, `<slice>@<name>.log.gz`, so
collectors sharing a bucket never share a key: each collector's parts of a
slice are files of the same slice here, and the merge reads them together
(and drops the records two collectors both hold by `_record_id`). The
collector's own SliceLayout reads the names back, so the merge and the
collector agree on what a slice is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from shipyard_logs.slices import DEFAULT_TIME_SLICE_FORMAT, HOST_PLACEHOLDER, SliceLayout
from shipyard_logs.uploader import COLLECTOR_SEPARATOR

from .errors import NoInputError

DAY = 86400
_PART = re.compile(r"\.[0-9a-f]{12}$")  # the uploader: digits; synth.py: hex
# The collector's name in a key (shipyard_logs.uploader.COLLECTOR_SEPARATOR).
_COLLECTOR = re.compile(COLLECTOR_SEPARATOR + r"[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SliceFile:
    name: str  # where it was found: a local path or s3://bucket/key
    rel: str  # relative to the store root: logs/...
    host: str
    start: int  # the slice's first second, UTC
    size: int


def day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def parse_name(layout: SliceLayout, rel: str) -> tuple[str, int] | None:
    """(host, slice start) of `logs/<slice>[@<collector>][.<start>](.log|.log.gz)`, else None."""
    if rel.endswith(".log.gz"):
        stem = rel.removesuffix(".log.gz")
    elif rel.endswith(".log"):
        stem = rel.removesuffix(".log")
    else:
        return None
    parsed = layout.parse(stem + ".log")
    if parsed is None:
        stem = _PART.sub("", stem)
        parsed = layout.parse(stem + ".log") or layout.parse(_COLLECTOR.sub("", stem) + ".log")
    return parsed


def day_prefix(layout: SliceLayout, day: date) -> str:
    """The longest `logs/...` prefix every slice of the day shares (a directory for the default)."""
    start = day_start(day)
    before_host = layout.format.split(HOST_PLACEHOLDER)[0]
    first, last = (
        "logs/" + datetime.fromtimestamp(second, UTC).strftime(before_host)
        for second in (start, start + DAY - 1)
    )
    common = ""
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        common += a
    return common


def _select(
    layout: SliceLayout, day: date, found: Iterable[tuple[str, str, int]]
) -> list[SliceFile]:
    start = day_start(day)
    picked = []
    for name, rel, size in found:
        parsed = parse_name(layout, rel)
        if parsed is not None and start <= parsed[1] < start + DAY:
            picked.append(SliceFile(name, rel, parsed[0], parsed[1], size))
    return sorted(picked, key=lambda s: (s.start, s.rel))


def local_day(root: Path, day: date, layout: SliceLayout) -> list[SliceFile]:
    if not root.is_dir():
        raise NoInputError(f"no such directory: {root}")
    prefix = day_prefix(layout, day)
    base = root / prefix.rpartition("/")[0]
    found = []
    if base.is_dir():
        for path in base.rglob("*"):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(prefix) and path.is_file():
                found.append((str(path), rel, path.stat().st_size))
    return _select(layout, day, found)


def s3_day(
    client: Any,  # noqa: ANN401 - boto3 clients are untyped
    bucket: str,
    prefix: str,
    day: date,
    layout: SliceLayout,
) -> list[SliceFile]:
    from .s3 import check_bucket

    check_bucket(client, bucket)
    listed = prefix + day_prefix(layout, day)
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=listed):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            found.append((f"s3://{bucket}/{key}", key.removeprefix(prefix), int(obj["Size"])))
    return _select(layout, day, found)


def make_layout(time_slice_format: str = DEFAULT_TIME_SLICE_FORMAT) -> SliceLayout:
    if HOST_PLACEHOLDER not in time_slice_format:
        raise NoInputError(f"time_slice_format {time_slice_format!r} has no {HOST_PLACEHOLDER}")
    return SliceLayout(time_slice_format)


def groups(files: list[SliceFile], seconds: int = 3600) -> list[list[SliceFile]]:
    """The day's slices in time order, grouped by hour (or the slice length, if longer).

    A record and its duplicates share an event time, hence a slice span and a
    group: each group can be deduplicated and sorted on its own, which bounds
    the memory a merge needs to one hour of the day.
    """
    out: dict[int, list[SliceFile]] = {}
    for f in files:
        out.setdefault(f.start // seconds, []).append(f)
    return [out[k] for k in sorted(out)]
