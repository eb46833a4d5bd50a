"""The daily job, whichever engine runs it: find the day, merge, publish, report.

Nothing reaches the warehouse until the whole day has been merged in a
staging directory: a corrupt slice, a day without data or a missing bucket
ends the job with a one-line message and leaves every object as it was.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from shipyard_logs.slices import DEFAULT_TIME_SLICE_FORMAT

from . import s3
from .engine_duckdb import DuckSettings, Fetch
from .errors import NoInputError
from .schema import ACCESS_TAG
from .sources import SliceFile, groups, local_day, make_layout, s3_day
from .warehouse import LocalTarget, S3Target, Target, part_key, publish_day, report_key

log = logging.getLogger("shipyard_analytics")
ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class Request:
    day: date
    warehouse: str  # a directory, or s3://bucket/prefix
    root: Path | None = None  # the collector's store, or
    source: str | None = None  # s3://bucket/prefix it uploads to
    s3_options: s3.S3Options = field(default_factory=s3.S3Options)
    time_slice_format: str = DEFAULT_TIME_SLICE_FORMAT
    tag: str = ACCESS_TAG
    engine: str = "duckdb"
    staging: Path | None = None
    archive_after_days: int = 30
    archive_storage_class: str = "GLACIER_IR"
    duck: DuckSettings = field(default_factory=DuckSettings)
    spark_master: str = "local[*]"
    report_rows: int = 1000


@dataclass
class Result:
    day: date
    slices: int
    input_bytes: int
    rows: dict[str, int]
    changed: dict[str, bool]
    report: dict[str, Any]
    seconds: float


def open_target(request: Request, client: Any) -> Target:  # noqa: ANN401
    if request.warehouse.startswith("s3://"):
        bucket, prefix = s3.split_uri(request.warehouse)
        s3.check_bucket(client(), bucket)
        return S3Target(client(), bucket, prefix)
    return LocalTarget(Path(request.warehouse))


def _client_factory(request: Request) -> Callable[[], Any]:
    made: list[Any] = []

    def get() -> Any:  # noqa: ANN401
        if not made:
            made.append(s3.client(request.s3_options))
        return made[0]

    return get


def find_slices(request: Request, client: Callable[[], Any]) -> tuple[list[SliceFile], str]:
    layout = make_layout(request.time_slice_format)
    if request.root is not None:
        where = str(request.root)
        files = local_day(request.root, request.day, layout)
    elif request.source is not None:
        where = request.source
        bucket, prefix = s3.split_uri(request.source)
        files = s3_day(client(), bucket, prefix, request.day, layout)
    else:
        raise NoInputError("give the collector's store (--root) or its bucket (--s3)")
    if not files:
        raise NoInputError(f"no slices for {request.day} under {where} (nothing to merge)")
    return files, where


def _fetcher(request: Request, client: Callable[[], Any], staging: Path) -> Fetch:
    """Local slices are read in place; S3 ones are downloaded a group at a time."""
    held: list[Path] = []

    def fetch(group: list[SliceFile]) -> list[tuple[SliceFile, Path]]:
        if request.root is not None:
            return [(f, Path(f.name)) for f in group]
        for path in held:
            path.unlink(missing_ok=True)
        held.clear()
        out = []
        for f in group:
            bucket, _, key = f.name.removeprefix("s3://").partition("/")
            target = staging / "in" / f.rel
            s3.download(client(), bucket, key, target)
            held.append(target)
            out.append((f, target))
        return out

    return fetch


def merge_with(
    request: Request, files: list[SliceFile], fetch: Fetch, staging: Path
) -> dict[str, Path]:
    if request.engine == "spark":
        from .spark_job import merge_day as spark_merge

        return spark_merge(groups(files), fetch, request.day, staging, request.spark_master)
    from .engine_duckdb import merge_day

    return merge_day(groups(files), fetch, request.day, staging, request.duck)


def reports_with(request: Request, root: Path, staging: Path) -> dict[str, dict[str, Any]]:
    if request.engine == "spark":
        from .spark_job import run_reports as spark_reports

        return spark_reports(root, request.day, request.tag, request.spark_master)
    from .engine_duckdb import run_reports

    return run_reports(root, request.day, request.tag, staging, request.duck)


def row_counts(staged: dict[str, Path]) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    try:
        return {
            tag: int(con.execute("SELECT count(*) FROM read_parquet(?)", [str(p)]).fetchone()[0])
            for tag, p in staged.items()
        }
    finally:
        con.close()


def report_document(
    request: Request, rows: dict[str, int], results: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    reports = {}
    for name, result in results.items():
        kept = result["rows"][: request.report_rows]
        reports[name] = {
            "columns": result["columns"],
            "rows": kept,
            "truncated": len(result["rows"]) > len(kept),
        }
    return {
        "date": request.day.isoformat(),
        "tag": request.tag,
        "engine": request.engine,
        "rows_by_tag": dict(sorted(rows.items())),
        "reports": reports,
    }


def run_merge(request: Request) -> Result:
    started = time.monotonic()
    client = _client_factory(request)
    target = open_target(request, client)
    files, where = find_slices(request, client)
    log.info("%d slices of %s under %s", len(files), request.day, where)
    if request.staging is not None:
        request.staging.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="shipyard-merge-", dir=request.staging))
    try:
        staged = merge_with(request, files, _fetcher(request, client, staging), staging)
        if not staged:
            raise NoInputError(f"the slices of {request.day} under {where} hold no records")
        rows = row_counts(staged)
        changed = publish_day(target, request.day, staged)
        if isinstance(target, S3Target) and request.archive_after_days > 0:
            s3.ensure_lifecycle(
                target.client,
                target.bucket,
                target.prefix,
                request.archive_after_days,
                request.archive_storage_class,
            )
        results = reports_with(request, staging / "out", staging) if request.tag in staged else {}
        document = report_document(request, rows, results)
        report_file = staging / "daily.json"
        report_file.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        changed[report_key(request.day)] = target.put_if_changed(
            report_key(request.day), report_file
        )
        return Result(
            day=request.day,
            slices=len(files),
            input_bytes=sum(f.size for f in files),
            rows=rows,
            changed=changed,
            report=document,
            seconds=time.monotonic() - started,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_report(request: Request) -> dict[str, Any]:
    """The reports over a day already in the warehouse."""
    client = _client_factory(request)
    target = open_target(request, client)
    key = part_key(request.day, request.tag)
    if request.staging is not None:
        request.staging.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="shipyard-report-", dir=request.staging))
    try:
        if isinstance(target, LocalTarget):
            root = target.root
            if not (root / key).is_file():
                raise NoInputError(f"no {target.uri(key)}: merge {request.day} first")
        else:
            assert isinstance(target, S3Target)
            if not target.keys(key):
                raise NoInputError(f"no {target.uri(key)}: merge {request.day} first")
            root = staging / "warehouse"
            s3.download(target.client, target.bucket, target.prefix + key, root / key)
        results = reports_with(request, root, staging)
        rows = row_counts({request.tag: root / key})
        return report_document(request, rows, results)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
