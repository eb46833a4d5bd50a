"""The distributed engine: the same job and the same SQL files on Apache Spark.

    spark-submit --py-files shipyard.zip shipyard_analytics/spark_job.py merge \\
        --date 2026-12-01 --s3 s3://shipyard-logs --warehouse s3://shipyard-logs/warehouse/

takes exactly the arguments of `python -m shipyard_analytics merge` (the
engine is Spark whatever --engine says), and `--engine spark` runs it in
process on a local session. Spark reads the slices as text, and the shared
merge.sql and reports/*.sql run unchanged; only records.spark.sql spells the
JSON functions the Spark way. Each tag is then written by one task, sorted,
so that a day and tag are one file as on DuckDB.

The driver lists, downloads and publishes (the job module); the executors
read and write the staging directory (`--staging`), which on a cluster must
be a path every node sees.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from shipyard_analytics import sqlfiles
from shipyard_analytics.errors import CorruptSliceError, JobError
from shipyard_analytics.schema import COLUMNS, SORT_KEYS, TYPES, record_id_sql
from shipyard_analytics.sources import SliceFile
from shipyard_analytics.warehouse import part_key

ENGINE = "spark"


def session(master: str = "local[*]") -> Any:  # noqa: ANN401 - pyspark is untyped here
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("shipyard-logs-merge")
    if not SparkConf().contains("spark.master"):  # spark-submit's --master wins
        builder = builder.master(master)
        if master.startswith("local"):
            # Local mode stays on the loopback interface, whatever the host name resolves to.
            builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config(
                "spark.driver.host", "127.0.0.1"
            )
    for key, value in {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.parquet.compression.codec": "zstd",
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _uri(path: Path) -> str:
    return path.resolve().as_uri()


def merge_day(
    groups: list[list[SliceFile]],
    fetch: Any,  # noqa: ANN401 - job._fetcher's function
    day: Any,  # noqa: ANN401 - a date
    staging: Path,
    master: str,
) -> dict[str, Path]:
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F  # noqa: N812 - pyspark's convention

    local = fetch([f for group in groups for f in group])
    if not local:
        return {}
    spark = session(master)
    # Spark names a file by a URI of its own spelling and sees through
    # symbolic links; hard links with plain names (the suffix tells the codec)
    # make the file column a join key.
    links = staging / "spark-in"
    links.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[SliceFile, Path]] = {}
    for index, (f, path) in enumerate(local):
        name = f"{index}.log.gz" if path.name.endswith(".gz") else f"{index}.log"
        _link(path, links / name)
        files[name] = (f, path)
    spark.createDataFrame(
        [(name, f.host) for name, (f, _) in files.items()], "file STRING, host STRING"
    ).createOrReplaceTempView("slice_files")
    parts = F.split(F.col("value"), "\t", 3)
    raw = spark.read.text([_uri(links / name) for name in files]).select(
        F.col("_metadata.file_name").alias("file"),
        F.col("value"),
        parts.alias("parts"),
    )
    raw.select(
        "file",
        F.get("parts", 0).alias("time"),
        F.get("parts", 1).alias("tag"),
        F.get("parts", 2).alias("record"),
    ).createOrReplaceTempView("lines")
    try:
        bad = spark.sql(
            "SELECT file FROM lines WHERE record IS NULL OR tag = '' "
            "OR try_to_timestamp(time) IS NULL OR json_object_keys(record) IS NULL LIMIT 1"
        ).collect()
        if bad:
            raise CorruptSliceError(_explain(files, bad[0]["file"]))
        spark.sql(sqlfiles.read("records.spark")).createOrReplaceTempView("records")
        merged = spark.sql(sqlfiles.merge()).persist()
        tags = sorted(r["tag"] for r in merged.select("tag").distinct().collect())
        span = merged.agg(F.min("time"), F.max("time")).first()
        if span[0].date() != day or span[1].date() != day:
            raise CorruptSliceError(f"records dated {span[0]} .. {span[1]} in the slices of {day}")
        out = {}
        columns = [c.name for c in COLUMNS]
        for index, tag in enumerate(tags):
            written = staging / "spark" / str(index)
            (
                merged.where(F.col("tag") == tag)
                .coalesce(1)
                .sortWithinPartitions(*SORT_KEYS)
                .select(*columns)
                .write.parquet(_uri(written))
            )
            (produced,) = written.glob("part-*.parquet")
            target = staging / "out" / part_key(day, tag)
            target.parent.mkdir(parents=True, exist_ok=True)
            produced.replace(target)
            shutil.rmtree(written)
        merged.unpersist()
        return out | {tag: staging / "out" / part_key(day, tag) for tag in tags}
    except (Py4JJavaError, PySparkException) as exc:
        from shipyard_analytics.diagnose import find

        found = find([(f.name, p) for f, p in local])
        if found:
            raise CorruptSliceError(f"corrupt slice: {found}") from None
        first = str(exc).strip().splitlines()[0]
        raise JobError(f"Spark failed: {first}") from None


def _link(source: Path, link: Path) -> None:
    try:
        link.hardlink_to(source)
    except OSError:  # another file system: a copy, in the staging directory
        shutil.copyfile(source, link)


def _explain(files: dict[str, tuple[SliceFile, Path]], name: str) -> str:
    from shipyard_analytics.diagnose import first_problem

    f, path = files[name]
    return f"corrupt slice: {f.name} {first_problem(path) or 'a line Spark cannot read'}"


def run_reports(root: Path, day: Any, tag: str, master: str) -> dict[str, dict[str, Any]]:  # noqa: ANN401
    spark = session(master)
    spark.read.parquet(_uri(root / "logs")).createOrReplaceTempView("stored_logs")
    spark.sql(
        f"SELECT *, {record_id_sql(TYPES[ENGINE]['string'])} AS record_id FROM stored_logs"  # noqa: S608
    ).createOrReplaceTempView("logs")
    spark.sql("SELECT * FROM logs").where(
        f"dt = {sqlfiles.literal(day.isoformat())} AND tag = {sqlfiles.literal(tag)}"
    ).createOrReplaceTempView("access_log")
    results = {}
    for name in sqlfiles.REPORTS:
        frame = spark.sql(sqlfiles.report(name))
        rows = [[_plain(v) for v in row] for row in frame.collect()]
        results[name] = {"columns": frame.columns, "rows": rows}
    return results


def _plain(value: Any) -> Any:  # noqa: ANN401
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else value


def main(argv: list[str] | None = None) -> int:
    from shipyard_analytics.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    return cli_main([*args, "--engine", ENGINE])


if __name__ == "__main__":
    sys.exit(main())
