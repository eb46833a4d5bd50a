"""CREATE TABLE statements for Athena and Trino over the warehouse's layout.

Both read the Parquet files where the job writes them: Athena with Hive DDL
(`CREATE EXTERNAL TABLE ... PARTITIONED BY ... LOCATION`), Trino's Hive
connector with `CREATE TABLE ... WITH (external_location, partitioned_by)`.
New days are found by `MSCK REPAIR TABLE` (Athena) or
`system.sync_partition_metadata` (Trino), printed after the statements.

The table stores the collector's record id split in two columns (schema.py);
a view over it, `logs_with_record_id`, adds the id back as `record_id`. Both
engines run views in Trino's SQL.
"""

from __future__ import annotations

from .s3 import split_uri
from .schema import COLUMNS, PARTITION_KEYS, TABLE, TYPES, record_id_sql

VIEW = f"{TABLE}_with_record_id"


def _location(warehouse: str) -> str:
    bucket, prefix = split_uri(warehouse)
    return f"s3://{bucket}/{prefix}{TABLE}/"


def _quote(value: str) -> str:
    """A Trino (standard SQL) string literal."""
    return "'" + value.replace("'", "''") + "'"


def _hive_quote(value: str) -> str:
    """A Hive string literal: backslash escapes, not doubled quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def athena(warehouse: str, schema: str) -> str:
    types = TYPES["athena"]
    columns = ",\n".join(
        f"  `{c.name}` {types[c.type]} COMMENT {_hive_quote(c.doc)}" for c in COLUMNS
    )
    partitions = ", ".join(f"`{c.name}` {types[c.type]}" for c in PARTITION_KEYS)
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{schema}`.`{TABLE}` (\n{columns}\n)\n"
        f"COMMENT 'shipyard log warehouse: one file per day and tag'\n"
        f"PARTITIONED BY ({partitions})\n"
        f"STORED AS PARQUET\n"
        f"LOCATION {_hive_quote(_location(warehouse))}\n"
        f"TBLPROPERTIES ('parquet.compression' = 'ZSTD')"
    )


def trino(warehouse: str, schema: str) -> str:
    types = TYPES["trino"]
    # The Hive connector takes partition columns as the table's last columns.
    columns = ",\n".join(
        f'  "{c.name}" {types[c.type]} COMMENT {_quote(c.doc)}' for c in (*COLUMNS, *PARTITION_KEYS)
    )
    partitioned = ", ".join(_quote(c.name) for c in PARTITION_KEYS)
    return (
        f'CREATE TABLE IF NOT EXISTS "{schema}"."{TABLE}" (\n{columns}\n)\n'
        f"WITH (\n"
        f"  external_location = {_quote(_location(warehouse))},\n"
        f"  format = 'PARQUET',\n"
        f"  partitioned_by = ARRAY[{partitioned}]\n"
        f")"
    )


def record_id_view(schema: str) -> str:
    """The table with the collector's record id put back together, for Athena and Trino alike."""
    return (
        f'CREATE OR REPLACE VIEW "{schema}"."{VIEW}" AS\n'
        f"SELECT *, {record_id_sql(TYPES['trino']['string'])} AS record_id\n"
        f'FROM "{schema}"."{TABLE}"'
    )


def table_ddl(dialect: str, warehouse: str, schema: str) -> str:
    after = "-- then, after each merge: "
    view = record_id_view(schema)
    if dialect == "athena":
        table = athena(warehouse, schema)
        return f"{table};\n{view};\n{after}MSCK REPAIR TABLE `{schema}`.`{TABLE}`;"
    sync = f"CALL system.sync_partition_metadata('{schema}', '{TABLE}', 'ADD');"
    return f"{trino(warehouse, schema)};\n{view};\n{after}{sync}"
