"""Dialect-portable SQL helpers (Postgres in production, SQLite embedded)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, table: Table, conflict_cols: list[str]) -> Any:
    """INSERT ... ON CONFLICT (cols) DO NOTHING for the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict_cols)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict_cols)
    raise RuntimeError(f"unsupported database dialect {dialect!r}; use PostgreSQL or SQLite")
