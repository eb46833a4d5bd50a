"""The daily merge on DuckDB: a generated day of 1M records, once each, sorted, idempotent."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

import duckdb
import pytest
from conftest import DAY, Day, analytics, snapshot

from shipyard_analytics.schema import ACCESS_TAG, COLUMNS, record_id_sql

pytestmark = pytest.mark.slow


def part(warehouse: Path, tag: str) -> Path:
    return warehouse / "logs" / f"dt={DAY.isoformat()}" / f"tag={tag}" / "part-0.parquet"


def merge_args(day: Day, warehouse: Path) -> list[str]:
    root = str(day.root)
    return [
        "merge",
        "--date",
        DAY.isoformat(),
        "--root",
        root,
        "--warehouse",
        str(warehouse),
        "--report-rows",
        "10000",
    ]


@pytest.fixture(scope="module")
def merged(day_1m: Day, tmp_path_factory: pytest.TempPathFactory) -> Path:
    warehouse = tmp_path_factory.mktemp("warehouse")
    run = analytics(*merge_args(day_1m, warehouse))
    assert run.rc == 0, run.stderr
    assert "5 of 5 objects changed" in run.stderr, run.stderr
    return warehouse


def test_each_record_once(merged: Path, day_1m: Day) -> None:
    truth = day_1m.truth
    assert truth.records >= 1_000_000 and truth.duplicates > 10_000  # the day is what it claims
    files = sorted((merged / "logs").rglob("*.parquet"))
    con = duckdb.connect()
    rows = dict(
        con.execute(
            "SELECT tag, count(*) FROM read_parquet(?, hive_partitioning = true) GROUP BY tag",
            [[str(f) for f in files]],
        ).fetchall()
    )
    assert rows == dict(truth.by_tag)
    # The stored id, put back together, is each id of the text once: counted
    # here from the slices themselves, not by any engine.
    stored = con.execute(
        f"SELECT {record_id_sql('VARCHAR')} FROM read_parquet(?) "  # noqa: S608
        "WHERE record_chunk IS NOT NULL",
        [[str(f) for f in files]],
    ).fetchall()
    assert len(stored) == len(text_ids(day_1m.root)) > 900_000
    assert {row[0] for row in stored} == text_ids(day_1m.root)


@cache
def text_ids(root: Path) -> set[str]:
    found = set()
    for path in (root / "logs").rglob("*.log.gz"):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            rid = json.loads(line.split(b"\t", 2)[2]).get("_record_id")
            if rid is not None:
                found.add(rid)
    return found


def test_sorted_by_time(merged: Path) -> None:
    con = duckdb.connect()
    for tag in ("apache.access", "docker.app"):
        unsorted = con.execute(
            "SELECT count(*) FROM (SELECT time, lag(time) OVER (ORDER BY file_row_number) AS prev "
            "FROM read_parquet(?, file_row_number = true)) WHERE time < prev",
            [str(part(merged, tag))],
        ).fetchone()[0]
        assert unsorted == 0, tag


def test_hits_per_path_equal_the_generators_count(merged: Path, day_1m: Day) -> None:
    report = json.loads((merged / "reports" / f"dt={DAY.isoformat()}" / "daily.json").read_text())
    assert report["rows_by_tag"] == dict(day_1m.truth.by_tag)
    hits = report["reports"]["hits_per_path"]
    assert hits["columns"] == ["path", "hits"]
    assert not hits["truncated"]
    assert {path: n for path, n in hits["rows"]} == dict(day_1m.truth.hits_per_path)


def test_schema_is_the_declared_one(merged: Path) -> None:
    described = (
        duckdb.connect()
        .execute(
            "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = false)",
            [str(part(merged, ACCESS_TAG))],
        )
        .fetchall()
    )
    assert [row[0] for row in described] == [c.name for c in COLUMNS]


def test_the_records_column_only_for_keys_no_column_holds(merged: Path) -> None:
    con = duckdb.connect()
    access = con.execute(
        "SELECT count(record) FROM read_parquet(?)", [str(part(merged, ACCESS_TAG))]
    ).fetchone()[0]
    docker = con.execute(
        "SELECT count(*), count(record), any_value(json_extract_string(record, '$.container_name'))"
        " FROM read_parquet(?)",
        [str(part(merged, "docker.app"))],
    ).fetchone()
    assert access == 0
    assert docker[0] == docker[1] and docker[2].startswith("/app-")


def test_second_merge_changes_no_object(merged: Path, day_1m: Day) -> None:
    before = snapshot(merged)
    run = analytics(*merge_args(day_1m, merged))
    assert run.rc == 0, run.stderr
    assert "0 of 5 objects changed" in run.stderr
    assert snapshot(merged) == before


def test_slices_are_left_as_they_were(day_1m: Day, merged: Path) -> None:
    # The text slices stay the compatibility format: the merge only reads them.
    names = {p.name for p in (day_1m.root / "logs").rglob("*")}
    assert all(n.endswith(".log.gz") or n.isdigit() for n in names)
    assert not list(day_1m.root.rglob("*.parquet"))
