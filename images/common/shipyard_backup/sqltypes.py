"""The little of DB-API 2.0 this package uses (psycopg2 and PyMySQL both fit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    def execute(self, query: str, args: object = ...) -> object: ...
    def fetchall(self) -> Sequence[tuple[Any, ...]]: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...


class Connection(Protocol):
    autocommit: bool

    def cursor(self) -> Cursor: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...
