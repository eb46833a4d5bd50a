"""One day's logs in one file, and hits per path.

    python3 -m shipyard_logs.report --date YYYYMMDD [--root DIR] [--s3 BUCKET[/PREFIX]
        [--endpoint-url URL]] [--output FILE] [--tag apache.access]

Reads the day's slices (`logs/YYYYMMDD/*.log` and `*.log.gz`) from the
collector's root directory, from S3, or both; writes every line of the day,
sorted by time and otherwise in the order read, to --output (default
`YYYYMMDD.log`); prints `path<TAB>count` for the records tagged --tag, sorted
by path. It assumes the collector's default time_slice_format (a directory
per day).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

Source = tuple[str, bytes]  # name, raw file content


def local_slices(root: Path, date: str) -> Iterator[Source]:
    day = root / "logs" / date
    if not day.is_dir():
        return
    for path in sorted(day.iterdir()):
        if path.name.endswith((".log", ".log.gz")) and path.is_file():
            yield str(path), path.read_bytes()


def s3_slices(target: str, date: str, endpoint_url: str | None) -> Iterator[Source]:
    import boto3  # only --s3 needs boto3

    bucket, _, prefix = target.partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None)
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}logs/{date}/"
    )
    keys = sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
    for key in keys:
        if key.endswith((".log", ".log.gz")):
            yield f"s3://{bucket}/{key}", client.get_object(Bucket=bucket, Key=key)["Body"].read()


def lines_of(name: str, data: bytes) -> list[bytes]:
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return [line for line in data.split(b"\n") if line]


def sort_key(line: bytes) -> float:
    """The line's time as a number; unreadable times sort first rather than vanish."""
    stamp = line.split(b"\t", 1)[0]
    try:
        return datetime.fromisoformat(stamp.decode("ascii")).timestamp()
    except (ValueError, UnicodeDecodeError):
        return float("-inf")


def merge(sources: Iterable[Source]) -> list[bytes]:
    lines = [line for name, data in sources for line in lines_of(name, data)]
    lines.sort(key=sort_key)  # list.sort is stable: same-second lines keep their order
    return lines


def path_counts(lines: Iterable[bytes], tag: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    wanted = tag.encode()
    for line in lines:
        parts = line.split(b"\t", 2)
        if len(parts) != 3 or parts[1] != wanted:
            continue
        try:
            record: Any = json.loads(parts[2])
        except ValueError:
            continue
        path = record.get("path") if isinstance(record, dict) else None
        if isinstance(path, str):
            counts[path] += 1
    return counts


def write_counts(counts: Counter[str], out: IO[str]) -> None:
    for path in sorted(counts):
        out.write(f"{path}\t{counts[path]}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="shipyard-logs report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--date", required=True, help="the day, YYYYMMDD (UTC)")
    parser.add_argument("--root", type=Path, help="the collector's root directory")
    parser.add_argument("--s3", help="BUCKET or BUCKET/PREFIX the collector uploads to")
    parser.add_argument("--endpoint-url", help="S3 endpoint (moto, MinIO); AWS_* env as usual")
    parser.add_argument("--output", type=Path, help="merged day file (default YYYYMMDD.log)")
    parser.add_argument("--tag", default="apache.access", help="tag whose paths are counted")
    args = parser.parse_args(argv)
    try:
        datetime.strptime(args.date, "%Y%m%d")
    except ValueError:
        parser.error("--date must be YYYYMMDD")
    if args.root is None and args.s3 is None:
        parser.error("give --root, --s3 or both")
    sources: list[Source] = []
    if args.root is not None:
        sources.extend(local_slices(args.root, args.date))
    if args.s3 is not None:
        # A slice kept locally after its upload is the same object: read it once.
        local = {Path(name).name for name, _ in sources}
        remote = s3_slices(args.s3, args.date, args.endpoint_url)
        sources.extend(s for s in remote if Path(s[0]).name not in local)
    lines = merge(sources)
    output = args.output or Path(f"{args.date}.log")
    with output.open("wb") as out:
        for line in lines:
            out.write(line + b"\n")
    write_counts(path_counts(lines, args.tag), sys.stdout)
    print(f"{len(lines)} lines from {len(sources)} slices -> {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
