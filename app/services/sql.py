"""Dialect-portable SQL helpers (Postgres in production, SQLite embedded)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

# Bound parameters per statement: Postgres allows 65,535 and SQLite (>= 3.32) 32,766.
MAX_PARAMS = 30_000
T = TypeVar("T")


def chunks(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    size = max(1, size)
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def insert_ignore(session: Session, table: Table, conflict_cols: list[str]) -> Any:
    """INSERT ... ON CONFLICT (cols) DO NOTHING for the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict_cols)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict_cols)
    raise RuntimeError(f"unsupported database dialect {dialect!r}; use PostgreSQL or SQLite")


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Multi-row INSERTs as large as the bind-parameter limit allows (a few statements, not one per row)."""
    if rows:
        for part in chunks(rows, MAX_PARAMS // len(rows[0])):
            session.execute(insert(table).values(list(part)))
