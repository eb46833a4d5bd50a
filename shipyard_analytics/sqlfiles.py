"""The SQL kept in files: the merge's and the reports', shared by the engines."""

from __future__ import annotations

from importlib import resources

from .schema import RECORD_INDEX_PATTERN

# Report name -> file under sql/reports/, in the order they are shown.
REPORTS = ("hits_per_path", "codes_per_hour", "top_clients", "response_size", "slowest_paths")


def read(name: str) -> str:
    """The text of `sql/<name>.sql` (also inside a zip shipped with spark-submit --py-files)."""
    return resources.files(__package__).joinpath("sql", f"{name}.sql").read_text("utf-8")


def merge() -> str:
    """sql/merge.sql, with the record index's pattern from the schema."""
    return read("merge").replace("RECORD_INDEX_PATTERN", literal(RECORD_INDEX_PATTERN))


def report(name: str) -> str:
    return read(f"reports/{name}")


def literal(value: str) -> str:
    """A SQL string literal: the engines' table functions take no bind parameters here."""
    return "'" + value.replace("'", "''") + "'"
