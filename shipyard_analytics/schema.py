"""The warehouse table: its columns, partition keys and sort order, defined once.

Every engine, the DDL and the tests read these tuples. A column takes its
value from one key of the collector's JSON record; `record` keeps the whole
record as JSON when it has keys that no column covers (so nothing is lost for
unusual sources), and is NULL otherwise (so access-log rows stay small).
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE = "logs"
RECORD_ID_KEY = "_record_id"  # the collector's record identity (docs/architecture.md)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # neutral: timestamp, string, int, bigint
    key: str | None  # the record key it is read from; None: derived by the job
    doc: str


COLUMNS: tuple[Column, ...] = (
    Column(
        "time", "timestamp", None, "event time, UTC, whole seconds (the slice line's first field)"
    ),
    Column("host", "string", None, "the host the collector sliced the record under"),
    # The collector's `_record_id` is `<chunk id>-<index in the frame>`: stored
    # whole, a unique string per row is the table's largest column; split, the
    # chunk repeats (dictionary-encoded) and the index is a small int. An id
    # of another shape stays whole in record_chunk, with record_index NULL, so
    # record_id_sql() gives back every id exactly.
    Column(
        "record_chunk",
        "string",
        RECORD_ID_KEY,
        "the collector's record identity up to its last '-<index>' (the chunk id), or the "
        "whole id when it ends otherwise; NULL for at-most-once records",
    ),
    Column(
        "record_index",
        "int",
        RECORD_ID_KEY,
        "the record's index in its chunk, NULL when the id does not end in '-<index>'",
    ),
    Column("client", "string", "host", "apache2: the client address (%h)"),
    Column("remote_user", "string", "user", "apache2: the authenticated user (%u)"),
    Column("method", "string", "method", "apache2: the request method"),
    Column("path", "string", "path", "apache2: the request path and query"),
    Column("code", "int", "code", "apache2: the status code (%>s)"),
    Column("size", "bigint", "size", "apache2: the response bytes (%b), NULL for '-'"),
    Column("referer", "string", "referer", "apache2: the Referer header"),
    Column("agent", "string", "agent", "apache2: the User-Agent header"),
    Column(
        "duration_us",
        "bigint",
        "duration_us",
        "time to serve the request in microseconds (%D), where logged",
    ),
    Column("level", "string", "level", "error logs: the level"),
    Column("message", "string", "message", "error and unparsed lines: the text"),
    Column("record", "string", None, "the whole record as JSON when it has keys no column covers"),
)
# Hive-style partitions, outermost first: dt=YYYY-MM-DD/tag=<tag>/.
PARTITION_KEYS: tuple[Column, ...] = (
    Column("dt", "string", None, "the UTC day, YYYY-MM-DD"),
    Column("tag", "string", None, "the fluentd tag, Hive-escaped in the path"),
)
# What follows the last '-' of `<chunk>-<index>`: a canonical decimal that
# fits an int. An id that ends otherwise is kept whole.
RECORD_INDEX_PATTERN = "^(0|[1-9][0-9]{0,8})$"
# Record keys that columns hold, plus the agent's host key, which `host` already says.
COVERED_KEYS: tuple[str, ...] = (
    *dict.fromkeys(c.key for c in COLUMNS if c.key is not None),
    "source_host",
)
# Rows are sorted by time; the rest only makes the order total, so that the
# same input gives the same bytes (`tie` is a hash of the record's text).
SORT_KEYS: tuple[str, ...] = ("time", "host", "record_chunk", "record_index", "tie")
ACCESS_TAG = "apache.access"

TYPES: dict[str, dict[str, str]] = {
    "duckdb": {
        "timestamp": "TIMESTAMPTZ",
        "string": "VARCHAR",
        "int": "INTEGER",
        "bigint": "BIGINT",
    },
    "spark": {"timestamp": "TIMESTAMP", "string": "STRING", "int": "INT", "bigint": "BIGINT"},
    "athena": {"timestamp": "timestamp", "string": "string", "int": "int", "bigint": "bigint"},
    "trino": {
        "timestamp": "timestamp",
        "string": "varchar",
        "int": "integer",
        "bigint": "bigint",
    },
}


def column_names() -> list[str]:
    return [c.name for c in COLUMNS]


def record_id_sql(string_type: str) -> str:
    """The collector's record id from the split columns, in SQL DuckDB, Spark and Trino share."""
    return (
        "CASE WHEN record_index IS NULL THEN record_chunk "
        f"ELSE concat(record_chunk, '-', CAST(record_index AS {string_type})) END"
    )
