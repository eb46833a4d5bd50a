"""The stored table: the record id split and given back whole, and the DDL matching the files."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import sqlglot
from conftest import DAY, analytics
from sqlglot import exp

from shipyard_analytics.ddl import VIEW, record_id_view, trino
from shipyard_analytics.schema import COLUMNS, PARTITION_KEYS

# Ids of every shape: the collector's `<chunk>-<index>` (a chunk id may hold
# '-' itself), and ids a source set on its own, which must come back unchanged.
IDS = [
    "AAECAwQFBgcICQoLDA0ODw-0",
    "AAECAwQFBgcICQoLDA0ODw-1",
    "a-b-3",
    "-5",
    "mine",
    "x-",
    "abc-007",
    "n-999999999",
    "n-2147483648",
    "n-99999999999",
    "ünï-12",
    "ǘ́́-12",
]


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ids")
    folder = root / "logs" / f"{DAY:%Y%m%d}"
    folder.mkdir(parents=True)
    lines = []
    for second, rid in enumerate([*IDS, IDS[0], None]):  # one resent record, one without id
        record = {"host": "10.0.0.1", "method": "GET", "path": f"/{second % 11}", "code": 200}
        if rid is not None:
            record["_record_id"] = rid
        stamp = f"2026-12-01T10:00:{second % 11:02d}+00:00"
        lines.append(f"{stamp}\tapache.access\t{json.dumps(record, ensure_ascii=False)}\n")
    (folder / "web-1-10.log").write_text("".join(lines))
    warehouse = root / "wh"
    run = analytics(
        "merge", "--date", DAY.isoformat(), "--root", str(root), "--warehouse", str(warehouse)
    )
    assert run.rc == 0, run.stderr
    return warehouse / "logs" / f"dt={DAY.isoformat()}" / "tag=apache.access" / "part-0.parquet"


def test_every_id_comes_back_once_through_the_ddls_view(merged: Path) -> None:
    # The view Athena and Trino get, translated to DuckDB by sqlglot, over the file itself.
    view = sqlglot.parse_one(record_id_view("shipyard"), read="trino")
    select = view.expression.copy()
    select.set("from_", exp.From(this=exp.Table(this=exp.to_identifier("stored"))))
    query = select.sql(dialect="duckdb")
    con = duckdb.connect()
    con.execute("CREATE TABLE stored AS SELECT * FROM read_parquet(?)", [str(merged)])
    ids = [row[0] for row in con.execute(f"SELECT record_id FROM ({query})").fetchall()]  # noqa: S608
    assert sorted(i for i in ids if i is not None) == sorted(IDS)
    assert ids.count(None) == 1
    split = dict(
        con.execute(
            "SELECT record_chunk, record_index FROM stored WHERE record_index IS NOT NULL"
        ).fetchall()
    )
    assert split["a-b"] == 3 and split[""] == 5 and split["n"] == 999999999
    assert {"mine", "x-", "abc-007", "n-2147483648"} <= {
        r[0]
        for r in con.execute(
            "SELECT record_chunk FROM stored WHERE record_index IS NULL"
        ).fetchall()
    }
    assert VIEW in record_id_view("shipyard")


def test_the_ddl_describes_the_files(merged: Path) -> None:
    create = sqlglot.parse_one(trino("s3://b/w/", "shipyard"), read="trino")
    declared = [(c.name, c.args["kind"].sql("duckdb")) for c in create.this.expressions]
    stored = duckdb.connect().execute(
        "SELECT name, converted_type FROM parquet_schema(?) WHERE num_children IS NULL",
        [str(merged)],
    )
    logical = {"UTF8": "TEXT", "INT_32": "INT", "INT_64": "BIGINT", "TIMESTAMP_MICROS": "TIMESTAMP"}
    files = [(name, logical.get(kind, kind)) for name, kind in stored.fetchall()]
    assert [n for n, _ in declared] == [c.name for c in (*COLUMNS, *PARTITION_KEYS)]
    # The partition columns live in the path only: not stored twice.
    assert [n for n, _ in files] == [c.name for c in COLUMNS]
    assert declared[: len(files)] == files
