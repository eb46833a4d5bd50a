"""The Athena and Trino DDL parse, and describe the table the job writes."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from shipyard_analytics.ddl import VIEW, athena, table_ddl, trino
from shipyard_analytics.schema import COLUMNS, PARTITION_KEYS, TYPES

WAREHOUSE = "s3://shipyard-logs/warehouse/"


def columns(create: exp.Create) -> list[tuple[str, str]]:
    return [(c.name, c.args["kind"].sql("trino").lower()) for c in create.this.expressions]


@pytest.mark.parametrize(("dialect", "make"), [("athena", athena), ("trino", trino)])
def test_ddl_parses_as_one_create_table(dialect: str, make: object) -> None:
    statements = sqlglot.parse(make(WAREHOUSE, "shipyard"), read=dialect)  # type: ignore[operator]
    assert len(statements) == 1
    create = statements[0]
    assert isinstance(create, exp.Create) and create.kind == "TABLE"
    assert create.this.this.name == "logs" and create.this.this.db == "shipyard"
    text = create.sql(dialect="trino")
    assert "s3://shipyard-logs/warehouse/logs/" in text
    assert "PARQUET" in text.upper()


def test_athena_columns_and_partitions() -> None:
    create = sqlglot.parse_one(athena(WAREHOUSE, "shipyard"), read="athena")
    assert [name for name, _ in columns(create)] == [c.name for c in COLUMNS]
    partitioned = create.find(exp.PartitionedByProperty)
    assert partitioned is not None
    assert [c.name for c in partitioned.this.expressions] == [c.name for c in PARTITION_KEYS]
    assert create.find(exp.ExternalProperty) is not None or "EXTERNAL" in athena(WAREHOUSE, "s")


def test_trino_columns_types_and_partitions() -> None:
    create = sqlglot.parse_one(trino(WAREHOUSE, "shipyard"), read="trino")
    expected = [(c.name, TYPES["trino"][c.type]) for c in (*COLUMNS, *PARTITION_KEYS)]
    assert columns(create) == expected
    partitioned = create.find(exp.PartitionedByProperty)
    assert partitioned is not None
    assert [e.name for e in partitioned.this.expressions] == [c.name for c in PARTITION_KEYS]
    location = next(p for p in create.find_all(exp.Property) if p.name == "external_location")
    assert location.args["value"].name == "s3://shipyard-logs/warehouse/logs/"
    assert create.find(exp.FileFormatProperty).name == "PARQUET"


def test_the_cli_prints_a_statement_and_what_to_run_after_a_merge() -> None:
    text = table_ddl("athena", WAREHOUSE, "shipyard")
    assert (
        text.splitlines()[-1] == "-- then, after each merge: MSCK REPAIR TABLE `shipyard`.`logs`;"
    )
    parsed = [e for e in sqlglot.parse(text, read="athena") if not isinstance(e, exp.Semicolon)]
    assert [(type(e), e.kind) for e in parsed] == [(exp.Create, "TABLE"), (exp.Create, "VIEW")]


@pytest.mark.parametrize("dialect", ["athena", "trino"])
def test_the_view_gives_the_record_id_back(dialect: str) -> None:
    statements = sqlglot.parse(table_ddl(dialect, WAREHOUSE, "shipyard"), read=dialect)
    view = next(e for e in statements if isinstance(e, exp.Create) and e.kind == "VIEW")
    assert view.this.name == VIEW and view.this.db == "shipyard"
    select = view.expression
    assert select.args["from_"].this.name == "logs"
    assert [e.alias_or_name for e in select.expressions] == ["*", "record_id"]
