"""python -m shipyard_analytics COMMAND: merge, report, ddl, generate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from shipyard_logs.slices import DEFAULT_TIME_SLICE_FORMAT

from .engine_duckdb import DuckSettings
from .errors import JobError
from .job import ENGINES, Request, run_merge, run_report
from .s3 import S3Options
from .schema import ACCESS_TAG


def parse_day(text: str) -> date:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=parse_day, required=True, help="the UTC day, YYYY-MM-DD")
    parser.add_argument(
        "--warehouse", required=True, help="a directory, or s3://BUCKET/PREFIX (table under logs/)"
    )
    parser.add_argument("--engine", choices=ENGINES, default="duckdb")
    parser.add_argument("--tag", default=ACCESS_TAG, help="the access-log tag the reports read")
    parser.add_argument("--staging", type=Path, help="scratch space (default: the system's temp)")
    parser.add_argument("--memory-limit", default="512MB", help="DuckDB's memory_limit")
    parser.add_argument("--threads", type=int, default=0, help="DuckDB's threads (0: one per core)")
    parser.add_argument("--spark-master", default="local[*]", help="with --engine spark")
    parser.add_argument("--report-rows", type=int, default=1000, help="rows kept per report")
    parser.add_argument("--endpoint-url", default="", help="S3 endpoint (moto, MinIO)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key-id-file", default="", help="else boto3's usual chain")
    parser.add_argument("--secret-access-key-file", default="")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shipyard_analytics", description=__doc__)
    parser.add_argument("--log-level", default="WARNING")
    commands = parser.add_subparsers(dest="command", required=True)

    merge = commands.add_parser("merge", help="merge one day's slices into the warehouse")
    _common(merge)
    source = merge.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", type=Path, help="the collector's store (ROOT with logs/)")
    source.add_argument("--s3", help="s3://BUCKET[/PREFIX] the collector uploads to")
    merge.add_argument(
        "--time-slice-format",
        default=DEFAULT_TIME_SLICE_FORMAT,
        help="the collector's time_slice_format for these slices",
    )
    merge.add_argument(
        "--archive-after-days",
        type=int,
        default=30,
        help="S3 warehouse: a lifecycle rule moves the table to --archive-storage-class "
        "after N days (0: no rule)",
    )
    merge.add_argument("--archive-storage-class", default="GLACIER_IR")

    report = commands.add_parser("report", help="run the reports over a merged day")
    _common(report)

    ddl = commands.add_parser("ddl", help="CREATE EXTERNAL TABLE for Athena or Trino")
    ddl.add_argument("--warehouse", required=True, help="s3://BUCKET/PREFIX of the warehouse")
    ddl.add_argument("--dialect", choices=("athena", "trino"), default="athena")
    ddl.add_argument("--schema", default="shipyard", help="the database / schema")

    generate = commands.add_parser("generate", help="write a synthetic day of slices")
    generate.add_argument("--date", type=parse_day, required=True)
    generate.add_argument("--records", type=int, default=1_000_000)
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--seed", type=int, default=1)
    return parser


def _request(args: argparse.Namespace) -> Request:
    return Request(
        day=args.date,
        warehouse=args.warehouse,
        root=getattr(args, "root", None),
        source=getattr(args, "s3", None),
        s3_options=S3Options(
            endpoint_url=args.endpoint_url,
            region=args.region,
            access_key_id_file=args.access_key_id_file,
            secret_access_key_file=args.secret_access_key_file,
        ),
        time_slice_format=getattr(args, "time_slice_format", DEFAULT_TIME_SLICE_FORMAT),
        tag=args.tag,
        engine=args.engine,
        staging=args.staging,
        archive_after_days=getattr(args, "archive_after_days", 0),
        archive_storage_class=getattr(args, "archive_storage_class", "GLACIER_IR"),
        duck=DuckSettings(memory_limit=args.memory_limit, threads=args.threads),
        spark_master=args.spark_master,
        report_rows=args.report_rows,
    )


def print_report(document: dict[str, Any], out: Any) -> None:  # noqa: ANN401
    for name, result in document["reports"].items():
        out.write(f"\n## {name}\n")
        out.write("\t".join(result["columns"]) + "\n")
        for row in result["rows"]:
            out.write("\t".join("" if v is None else str(v) for v in row) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(name)s %(levelname)s %(message)s")
    try:
        if args.command == "merge":
            result = run_merge(_request(args))
            changed = sorted(k for k, c in result.changed.items() if c)
            print(
                f"{result.day}: {sum(result.rows.values())} records from {result.slices} slices "
                f"({result.input_bytes} bytes) in {result.seconds:.1f}s; "
                f"{len(changed)} of {len(result.changed)} objects changed",
                file=sys.stderr,
            )
            for key in changed:
                print(f"  wrote {key}", file=sys.stderr)
            document = result.report
        elif args.command == "report":
            document = run_report(_request(args))
        elif args.command == "ddl":
            from .ddl import table_ddl

            print(table_ddl(args.dialect, args.warehouse, args.schema))
            return 0
        else:
            from .synth import generate, truth_json

            print(truth_json(generate(args.out, args.date, args.records, args.seed)))
            return 0
    except JobError as exc:
        print(f"shipyard_analytics {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        json.dump(document, sys.stdout, indent=1, sort_keys=True)
        print()
    else:
        print_report(document, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
