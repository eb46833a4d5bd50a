"""The same job and SQL on Spark local mode: one session, a smaller day, DuckDB's answers."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import DAY, Day

from shipyard_analytics.job import Request, run_merge
from shipyard_analytics.schema import COLUMNS

pytestmark = pytest.mark.slow
MASTER = "local[2]"


@pytest.fixture(scope="module")
def spark_session() -> Iterator[Any]:
    from shipyard_analytics.spark_job import session

    spark = session(MASTER)
    try:
        yield spark
    finally:
        spark.stop()


@pytest.fixture(scope="module")
def spark_day(tmp_path_factory: pytest.TempPathFactory) -> Day:
    from shipyard_analytics.synth import generate

    root = tmp_path_factory.mktemp("sparkday")
    return Day(root, generate(root, DAY, 150_000, seed=3, resend_share=0.1))


def merge(engine: str, day: Day, warehouse: Path) -> Any:
    return run_merge(
        Request(
            day=DAY,
            warehouse=str(warehouse),
            root=day.root,
            engine=engine,
            spark_master=MASTER,
            report_rows=100_000,
        )
    )


def close(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)  # type: ignore[arg-type]
    return a == b


def test_spark_merge_equals_the_truth_and_duckdb(
    spark_session: Any,
    spark_day: Day,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    spark = merge("spark", spark_day, tmp_path / "spark")
    spark_seconds = time.monotonic() - started
    duck = merge("duckdb", spark_day, tmp_path / "duck")
    truth = spark_day.truth
    assert truth.duplicates > 1000

    assert spark.rows == duck.rows == dict(truth.by_tag)
    hits = {p: n for p, n in spark.report["reports"]["hits_per_path"]["rows"]}
    assert hits == dict(truth.hits_per_path)
    for name, result in spark.report["reports"].items():
        other = duck.report["reports"][name]
        assert result["columns"] == other["columns"], name
        assert len(result["rows"]) == len(other["rows"]), name
        for a, b in zip(result["rows"], other["rows"], strict=True):
            assert all(close(x, y) for x, y in zip(a, b, strict=True)), (name, a, b)

    # Same table on both engines: columns, types, rows and their order.
    con = duckdb.connect()
    for tag in truth.by_tag:
        files = [
            str(w / "logs" / f"dt={DAY.isoformat()}" / f"tag={tag}" / "part-0.parquet")
            for w in (tmp_path / "spark", tmp_path / "duck")
        ]
        described = [
            con.execute(
                "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = false)", [f]
            ).fetchall()
            for f in files
        ]
        assert [r[:2] for r in described[0]] == [r[:2] for r in described[1]]
        assert [r[0] for r in described[0]] == [c.name for c in COLUMNS]
        differ = con.execute(
            "SELECT count(*) FROM (SELECT * FROM read_parquet(?) EXCEPT ALL "
            "SELECT * FROM read_parquet(?))",
            files,
        ).fetchone()[0]
        assert differ == 0, tag
        unsorted = con.execute(
            "SELECT count(*) FROM (SELECT time, lag(time) OVER (ORDER BY file_row_number) AS prev "
            "FROM read_parquet(?, file_row_number = true)) WHERE time < prev",
            [files[0]],
        ).fetchone()[0]
        assert unsorted == 0, tag

    again = merge("spark", spark_day, tmp_path / "spark")
    assert not any(again.changed.values()), again.changed
    print(f"spark merge + reports of {truth.records} records: {spark_seconds:.1f}s")
    report = tmp_path / "spark" / "reports" / f"dt={DAY.isoformat()}" / "daily.json"
    assert json.loads(report.read_text())["engine"] == "spark"
