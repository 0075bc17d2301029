"""Stopping and removing batches, and the incremental evaluation feed.

Cancel and delete run in their own transaction (retried on deadlocks, like submission): the caller
gets its answer only after the commit, so a poll right after a cancel already sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app import batch_versions, lifecycle
from app.auth.ownership import visible_batch
from app.auth.principal import Principal
from app.db import is_retryable_conflict, retrying, session_scope
from app.models import (
    Architecture,
    Batch,
    BatchEvaluation,
    BatchItem,
    BatchMethod,
    BatchVersion,
    Evaluation,
    GroundTruth,
    IdempotencyRecord,
    utcnow,
)
from app.services.batch_view import evaluation_row, public
from app.settings import Settings


@dataclass(frozen=True)
class CancelState:
    batch_id: str
    cancelled_at: datetime
    cancel_reason: str | None
    counts: dict[str, int]
    stopping: int  # running evaluations asked to stop, not stopped yet
    kept_for_other_batches: int  # pending evaluations another live batch still needs


def _in_transaction(fn: Any, settings: Settings, what: str) -> Any:
    def once() -> Any:
        with session_scope() as session:
            return fn(session)

    return retrying(once, settings.submit_retry_attempts, 0.05, retry_if=is_retryable_conflict, what=what)


def cancel(batch_id: str, principal: Principal, settings: Settings) -> CancelState:
    """Cancel (idempotent): a second call changes nothing and reports the same state."""

    def run(session: Session) -> CancelState:
        visible_batch(session, principal, batch_id)
        lifecycle.cancel_batch(session, batch_id)
        return cancel_state(session, batch_id)

    result: CancelState = _in_transaction(run, settings, "cancel")
    return result


def cancel_state(session: Session, batch_id: str) -> CancelState:
    batch = session.get(Batch, batch_id, populate_existing=True)
    assert batch is not None and batch.cancelled_at is not None
    counts: dict[str, int] = dict.fromkeys(lifecycle.EvaluationStatus, 0)
    stopping = 0
    kept = 0
    links = (
        select(Evaluation.status, Evaluation.cancel_requested_at.is_not(None), func.count())
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .where(BatchEvaluation.batch_id == batch_id)
        .group_by(Evaluation.status, Evaluation.cancel_requested_at.is_not(None))
    )
    for status, requested, n in session.execute(links):
        counts[status] = counts.get(status, 0) + n
        if status == lifecycle.EvaluationStatus.RUNNING and requested:
            stopping += n
        elif status in lifecycle.PENDING:
            kept += n
    return CancelState(
        batch_id,
        batch.cancelled_at,
        batch.cancel_reason,
        {str(k): v for k, v in counts.items()},
        stopping,
        kept,
    )


def remove(batch_id: str, principal: Principal, settings: Settings) -> int:
    """Delete the batch, its items, method entries, ground truth and Idempotency-Key records, and
    the evaluations no other batch uses. Returns the number of evaluations removed."""

    def run(session: Session) -> int:
        visible_batch(session, principal, batch_id)
        removed = lifecycle.delete_unshared_evaluations(session, batch_id)
        # Explicit deletes (not only ON DELETE CASCADE): SQLite enforces foreign keys only when asked.
        for model in (GroundTruth, BatchItem, IdempotencyRecord, BatchMethod, BatchVersion):
            session.execute(
                delete(model)
                .where(model.batch_id == batch_id)  # type: ignore[attr-defined]
                .execution_options(synchronize_session=False)
            )
        session.execute(
            delete(Batch).where(Batch.id == batch_id).execution_options(synchronize_session=False)
        )
        return removed

    removed: int = _in_transaction(run, settings, "delete")
    batch_versions.announce([batch_id])  # this process's memo of its version goes with it
    return removed


@dataclass(frozen=True)
class ChangePage:
    items: list[dict[str, Any]]
    next: str
    more: bool


def parse_cursor(cursor: str | None) -> int:
    """The cursor is the change sequence as decimal text (validated by the route's pattern). It
    gives nothing away: it only filters rows of a batch the caller was already allowed to read."""
    return int(cursor) if cursor else 0


def changes(session: Session, batch: Batch, after: int, limit: int, grace_s: float) -> ChangePage:
    """The batch's evaluations whose change sequence is above ``after``, oldest change first.

    ``next`` moves past a change only once it is older than ``grace_s``: on PostgreSQL sequence
    values are taken before commit, so a transition that got a smaller value may commit after a
    larger one; holding the cursor back by the grace lets such a late commit still be seen. The
    changes within the grace come again on the next poll (same ``seq``: dedupe by it)."""
    rows = session.execute(
        select(Evaluation, Architecture, BatchMethod.alias)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(BatchMethod, BatchMethod.id == BatchEvaluation.batch_method_id)
        .join(Architecture, Architecture.id == Evaluation.architecture_id)
        .where(BatchEvaluation.batch_id == batch.id, Evaluation.updated_seq > after)
        .order_by(Evaluation.updated_seq, Evaluation.id)
        .limit(limit + 1)
    ).all()
    page, more = rows[:limit], len(rows) > limit
    horizon = utcnow() - timedelta(seconds=grace_s)
    cursor = after
    settled = True
    items: list[dict[str, Any]] = []
    for ev, arch, alias in page:
        changed = ev.changed_at
        if changed is not None and changed.tzinfo is None:
            changed = changed.replace(tzinfo=horizon.tzinfo)  # SQLite: naive UTC
        settled = settled and (changed is None or changed <= horizon)
        if settled:
            cursor = ev.updated_seq
        row = public(evaluation_row(ev, arch))
        items.append(
            {
                **row,
                "method": alias,
                "method_name": ev.method,
                "seq": ev.updated_seq,
                "progress": ev.progress or {},
                "cancel_requested": ev.cancel_requested_at is not None,
            }
        )
    return ChangePage(items, str(cursor), more)
