"""Dialect-portable SQL helpers (Postgres in production, SQLite embedded)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Table, bindparam, cast, func, insert, literal, select, true, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

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


def rows_source(session: Session, columns: Sequence[tuple[TypeEngine[Any], Sequence[Any]]]) -> list[Any]:
    """Column expressions over rows sent as one bound value per column (Postgres: ``unnest`` of
    arrays) or one JSON document (SQLite: ``json_each``), for ``INSERT … SELECT``. The statement text
    does not depend on the row count, so it compiles once and is parsed once by the server however
    many rows there are, which many-row ``VALUES`` lists do not."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        arrays = [cast(bindparam(None, list(values), type_=ARRAY(t)), ARRAY(t)) for t, values in columns]
        names = [f"c{i}" for i in range(len(columns))]
        src = func.unnest(*arrays).table_valued(*names).render_derived()
        return [src.c[n] for n in names]
    rows = [list(r) for r in zip(*(values for _, values in columns), strict=True)]
    doc = func.json_each(json.dumps(rows)).table_valued("value")
    return [type_coerce(func.json_extract(doc.c.value, f"$[{i}]"), t) for i, (t, _) in enumerate(columns)]


def id_array(session: Session, ids: Sequence[int]) -> Any:
    """``SELECT`` of the given integers, for ``col IN (…)`` with one bound value."""
    (col,) = rows_source(session, [(BigInteger(), ids)])
    return select(col)


def constant(session: Session, value: Any, type_: TypeEngine[Any]) -> Any:
    """A bound constant for the select list of ``INSERT … SELECT`` (typed explicitly on Postgres,
    where an untyped parameter in a select list would be read as text)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(literal(value, type_), type_)
    return literal(value, type_)


def insert_select(
    session: Session,
    table: Table,
    varying: dict[str, tuple[TypeEngine[Any], Sequence[Any]]],
    constants: dict[str, tuple[TypeEngine[Any], Any]] | None = None,
    conflict_cols: list[str] | None = None,
) -> Any:
    """One ``INSERT … SELECT`` of many rows (see ``rows_source``); with ``conflict_cols``, rows that
    exist already are skipped (``ON CONFLICT DO NOTHING``). Returns the statement, for ``returning``."""
    names = list(varying)
    exprs = rows_source(session, [varying[n] for n in names])
    for name, (type_, value) in (constants or {}).items():
        names.append(name)
        exprs.append(constant(session, value, type_))
    base = insert_ignore(session, table, conflict_cols) if conflict_cols else insert(table)
    # ``WHERE true``: SQLite would otherwise read an ON CONFLICT clause as a join condition.
    return base.from_select(names, select(*exprs).where(true()))
