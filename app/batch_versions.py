"""A change counter per batch: what a ranking read compares instead of aggregating the batch's rows.

Every change a ranking page shows (an evaluation's status, score or details; a ground-truth value; a
funnel's second stage) marks what it touched on the session; the counters of the affected batches are
bumped in the same transaction, just before it commits. A page rendered at version v is therefore
valid exactly as long as the version reads v, so the read path is one primary-key lookup, an ETag
compare and a cached body (issue 19, item 7).

Why at commit and not at each statement: a transaction takes its evaluation row locks first and its
counter row locks last, in batch-id order, so two transactions can never hold one lock each and wait
for the other's (a worker finishing an evaluation while another batch's cancel stops it).

Shared evaluations bump every batch that links them. Changes through ORM objects are found by a
flush hook; a change written in SQL around this module (a bench's shortcut) must call :func:`bump`
itself, or cached pages do not see it.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterable
from typing import Any, Protocol

from sqlalchemy import Table, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models import BatchEvaluation, BatchVersion, Evaluation, GroundTruth
from app.services.sql import MAX_PARAMS, chunks

_EVALUATIONS = "fastarchrank.touched_evaluations"
_BATCHES = "fastarchrank.touched_batches"
_BUMPED = "fastarchrank.bumped_batches"


class Forgetter(Protocol):
    def forget(self, batch_ids: Collection[str]) -> None: ...


# Told after a commit which batches it bumped: an API process's memo of their versions
# (app/services/ranking_cache.py VersionCache) forgets them, so a client sees its own writes at once.
# Weak: every app a test creates subscribes its cache.
_listeners: weakref.WeakSet[Any] = weakref.WeakSet()


def subscribe(listener: Forgetter) -> None:
    _listeners.add(listener)


def announce(batch_ids: Collection[str]) -> None:
    """Tell this process's memos that these batches changed (or are gone)."""
    for listener in list(_listeners):
        listener.forget(batch_ids)


def touch_evaluations(session: Session, evaluation_ids: Iterable[int]) -> None:
    """The rows of these evaluations changed in this transaction: bump their batches at commit."""
    ids = set(evaluation_ids)
    if ids:
        _begin(session)
        session.info.setdefault(_EVALUATIONS, set()).update(ids)


def touch_batch(session: Session, batch_id: str) -> None:
    """Something of this batch a page shows changed (ground truth, funnel links, a cancel)."""
    _begin(session)
    session.info.setdefault(_BATCHES, set()).add(batch_id)


def _begin(session: Session) -> None:
    """Touches belong to a transaction: begin one if none has, so that a rollback forgets them."""
    if not session.in_transaction():
        session.connection()


def version(session: Session, batch_id: str) -> int:
    """The batch's current version (0 before its first change)."""
    value = session.scalar(select(BatchVersion.version).where(BatchVersion.batch_id == batch_id))
    return int(value or 0)


def bump(session: Session, batch_ids: Iterable[str]) -> None:
    """Add one to the versions of these batches now (rows created on first use), in id order."""
    ordered = sorted(set(batch_ids))
    if not ordered:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: Table = BatchVersion.__table__  # type: ignore[assignment]
    for part in chunks(ordered, MAX_PARAMS // 2):
        # VALUES in id order: PostgreSQL takes the row locks of one statement in that order.
        stmt = insert(table).values([{"batch_id": b, "version": 1} for b in part])
        session.execute(
            stmt.on_conflict_do_update(index_elements=["batch_id"], set_={"version": table.c.version + 1})
        )


def _batches_of(session: Session, evaluation_ids: set[int]) -> set[str]:
    found: set[str] = set()
    for part in chunks(sorted(evaluation_ids), MAX_PARAMS):
        found.update(
            session.scalars(
                select(BatchEvaluation.batch_id)
                .where(BatchEvaluation.evaluation_id.in_(list(part)))
                .distinct()
            )
        )
    return found


@event.listens_for(Session, "before_flush")
def _touch_orm_changes(session: Session, _context: Any, _instances: Any) -> None:
    """Changes made through ORM objects (an operator's script, a test) are seen like the lifecycle's."""
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Evaluation) and obj.id is not None:
            touch_evaluations(session, [obj.id])
        elif isinstance(obj, GroundTruth | BatchEvaluation):
            touch_batch(session, obj.batch_id)


@event.listens_for(Session, "before_commit")
def _bump_touched(session: Session) -> None:
    # SQLAlchemy flushes pending ORM changes only after this hook: flush them now, so that their
    # before_flush touches are part of this bump.
    session.flush()
    evaluations: set[int] = session.info.pop(_EVALUATIONS, set())
    batches: set[str] = session.info.pop(_BATCHES, set())
    if evaluations:
        batches |= _batches_of(session, evaluations)
    bump(session, batches)
    if batches:
        session.info[_BUMPED] = batches


@event.listens_for(Session, "after_commit")
def _announce_bumped(session: Session) -> None:
    bumped: set[str] | None = session.info.pop(_BUMPED, None)
    if bumped:
        announce(bumped)


@event.listens_for(Session, "after_soft_rollback")
def _forget_touched(session: Session, previous: Any) -> None:
    # Soft: fires even when no statement had begun a database transaction yet. A savepoint's
    # rollback leaves the outer transaction's touches alone.
    if previous.parent is not None:
        return
    session.info.pop(_EVALUATIONS, None)
    session.info.pop(_BATCHES, None)
    session.info.pop(_BUMPED, None)
