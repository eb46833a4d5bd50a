"""The embedded engine: DuckDB runs the merge and the reports in the controller's .venv.

The day is merged an hour at a time (sources.groups): each hour's slices are
parsed, deduplicated and sorted, then appended to a table in a DuckDB file in
the staging directory, so memory stays bounded by an hour of data whatever
the day holds (DuckDB spills to the same directory past `memory_limit`).
Each tag's rows are then written out in that order as one Parquet file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from . import sqlfiles
from .errors import CorruptSliceError
from .schema import COLUMNS, SORT_KEYS, TYPES, record_id_sql
from .sources import SliceFile
from .warehouse import day_prefix, part_key

ENGINE = "duckdb"
# Lines longer than this are refused as corrupt; the collector's own frames are smaller.
MAX_LINE_BYTES = 16 * 1024 * 1024
# Row groups of 2^19 rows: each carries its own dictionaries, and at 131072
# rows (DuckDB's default) those repeats were a tenth of the file; 2^20 saves
# 2% more but doubles what each writer thread holds against memory_limit. A
# day of 10M records has about 20 row groups, an hour or so each, to prune
# by time.
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 9, ROW_GROUP_SIZE 524288"

Fetch = Callable[[list[SliceFile]], list[tuple[SliceFile, Path]]]


@dataclass(frozen=True)
class DuckSettings:
    memory_limit: str = "512MB"
    threads: int = 0  # 0: DuckDB's default, one per core


def connect(staging: Path, settings: DuckSettings, database: str = ":memory:") -> Any:  # noqa: ANN401
    con = duckdb.connect(database)
    con.execute(f"SET memory_limit = {sqlfiles.literal(settings.memory_limit)}")
    con.execute(f"SET temp_directory = {sqlfiles.literal(str(staging / 'spill'))}")
    if settings.threads:
        con.execute(f"SET threads = {int(settings.threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = true")
    return con


# The statements built here take SQL from the package's files and values
# through sqlfiles.literal only (DuckDB binds no parameters in COPY targets or
# table functions' file lists), hence the S608 waivers.


# One column per tab-separated field, no quoting: the collector escapes tabs
# and newlines inside the JSON, and replaces them in tags.
LINES_VIEW = """
    CREATE OR REPLACE TEMP VIEW lines AS
    SELECT filename AS file, time, tag, record
    FROM read_csv(
        [FILES],
        delim = '\t', quote = '', escape = '', header = false, auto_detect = false,
        strict_mode = true, null_padding = false, filename = true,
        max_line_size = MAX_LINE, buffer_size = BUFFER,
        columns = {'time': 'VARCHAR', 'tag': 'VARCHAR', 'record': 'VARCHAR'}
    )
"""


def _lines_view(files: list[Path]) -> str:
    return (
        LINES_VIEW.replace("MAX_LINE", str(MAX_LINE_BYTES))
        .replace("BUFFER", str(2 * MAX_LINE_BYTES))
        .replace("FILES", ", ".join(sqlfiles.literal(str(p)) for p in files))
    )


def merge_day(
    groups: list[list[SliceFile]],
    fetch: Fetch,
    day: date,
    staging: Path,
    settings: DuckSettings,
) -> dict[str, Path]:
    """Stage the day's records once each, sorted; returns tag -> Parquet file in staging."""
    con = connect(staging, settings, str(staging / "merge.duckdb"))
    try:
        con.execute("CREATE TEMP TABLE slice_files (file VARCHAR, host VARCHAR)")
        records = sqlfiles.read("records.duckdb")
        merge = sqlfiles.merge()
        order = ", ".join(["tag", *SORT_KEYS])
        created = False
        for group in groups:
            local = fetch(group)
            con.execute("DELETE FROM slice_files")
            con.executemany(
                "INSERT INTO slice_files VALUES (?, ?)", [(str(p), f.host) for f, p in local]
            )
            con.execute(_lines_view([p for _, p in local]))
            con.execute(f"CREATE OR REPLACE TEMP VIEW records AS {records}")
            statement = "CREATE TABLE staged AS" if not created else "INSERT INTO staged"
            try:
                con.execute(f"{statement} SELECT * FROM ({merge}) ORDER BY {order}")  # noqa: S608
            except duckdb.Error as exc:
                raise CorruptSliceError(_explain(exc, local)) from None
            created = True
        if not created:
            return {}
        _check_day(con, day)
        return _write_tags(con, staging / "out", day)
    finally:
        con.close()


def _explain(exc: Exception, local: list[tuple[SliceFile, Path]]) -> str:
    from .diagnose import find

    found = find([(f.name, p) for f, p in local])
    first = str(exc).strip().splitlines()[0]
    return f"corrupt slice: {found}" if found else f"cannot read the slices ({first})"


def _check_day(con: Any, day: date) -> None:  # noqa: ANN401
    low, high = con.execute("SELECT min(time), max(time) FROM staged").fetchone()
    if low is None:
        return
    if low.date() != day or high.date() != day:
        raise CorruptSliceError(
            f"records dated {low.isoformat()} .. {high.isoformat()} in the slices of {day}"
        )


def _write_tags(con: Any, root: Path, day: date) -> dict[str, Path]:  # noqa: ANN401
    """Each tag's rows, in staged order, as root/<warehouse key>: a warehouse of one day."""
    columns = ", ".join(c.name for c in COLUMNS)
    out: dict[str, Path] = {}
    tags = [
        row[0] for row in con.execute("SELECT DISTINCT tag FROM staged ORDER BY tag").fetchall()
    ]
    for tag in tags:
        path = root / part_key(day, tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT {columns} FROM staged WHERE tag = {sqlfiles.literal(tag)}) "  # noqa: S608
            f"TO {sqlfiles.literal(str(path))} ({PARQUET_OPTIONS})"
        )
        out[tag] = path
    return out


def run_reports(
    root: Path, day: date, tag: str, staging: Path, settings: DuckSettings
) -> dict[str, dict[str, Any]]:
    """Every report's SQL over the day's partition of `tag` in the warehouse at `root`."""
    con = connect(staging, settings)
    try:
        files = sqlfiles.literal(str(root / day_prefix(day) / "*" / "*.parquet"))
        con.execute(
            f"CREATE TEMP VIEW logs AS SELECT *, {record_id_sql(TYPES[ENGINE]['string'])} "  # noqa: S608
            f"AS record_id FROM read_parquet({files}, hive_partitioning = true)"
        )
        con.execute(
            "CREATE TEMP VIEW access_log AS SELECT * FROM logs "  # noqa: S608
            f"WHERE CAST(dt AS VARCHAR) = {sqlfiles.literal(day.isoformat())} "
            f"AND tag = {sqlfiles.literal(tag)}"
        )
        results = {}
        for name in sqlfiles.REPORTS:
            cursor = con.execute(sqlfiles.report(name))
            columns = [d[0] for d in cursor.description]
            results[name] = {"columns": columns, "rows": [list(r) for r in cursor.fetchall()]}
        return results
    finally:
        con.close()
