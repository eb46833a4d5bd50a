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
    Column(
        "record_id",
        "string",
        RECORD_ID_KEY,
        "the collector's record identity, NULL for at-most-once records",
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
# Record keys that columns hold, plus the agent's host key, which `host` already says.
COVERED_KEYS: tuple[str, ...] = (
    *(c.key for c in COLUMNS if c.key is not None),
    "source_host",
)
# Rows are sorted by time; the rest only makes the order total, so that the
# same input gives the same bytes (`tie` is a hash of the record's text).
SORT_KEYS: tuple[str, ...] = ("time", "host", "record_id", "tie")
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
