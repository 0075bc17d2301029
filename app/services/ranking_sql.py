"""A page of a live (still pending) ranking computed by the database with window functions.

A pending ranking changes with every finished evaluation, so it cannot be cached; building it in
Python means reading and ranking every row (seconds for 20,000 items) to return 100. Here the
database orders and ranks all rows and returns only the page. The order is the one
``app.services.reports.ranking.rank_rows`` defines (ranked rows best first, ties share the average
rank and keep item order; then the unranked categories in ``_UNRANKED_ORDER``), and a test holds the
two to the same listing. Finished rankings keep the Python path: it is cached once per batch.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session

from app.models import PENDING, Architecture, Batch, BatchEvaluation, BatchItem, BatchMethod, Evaluation
from app.services.reports.ranking import _UNRANKED_POSITION, _unranked_category


def _category(higher_is_better: bool) -> Any:
    """-1 for a ranked row, else the row's place in ``_UNRANKED_ORDER`` (as ``_unranked_category``)."""
    done = Evaluation.status == "done"
    usable = and_(done, Evaluation.finite.is_(True), Evaluation.score.is_not(None))
    best, worst = _UNRANKED_POSITION["overflow_best"], _UNRANKED_POSITION["overflow_worst"]
    return case(
        (usable, -1),
        (and_(done, Evaluation.score_kind == "inf"), best if higher_is_better else worst),
        (and_(done, Evaluation.score_kind == "-inf"), worst if higher_is_better else best),
        (and_(done, Evaluation.score_kind == "nan"), _UNRANKED_POSITION["nan"]),
        (and_(done, Evaluation.score.is_(None)), _UNRANKED_POSITION["no_score"]),
        (done, _UNRANKED_POSITION["nan"]),  # a finite number flagged non-finite by the worker
        *(
            (Evaluation.status == status, _UNRANKED_POSITION[status])
            for status in ("unmet", "rejected", "failed", "lost", "cancelled", "running", "queued")
        ),
        else_=_UNRANKED_POSITION["unknown"],
    )


def live_page(
    session: Session, batch: Batch, method: BatchMethod, higher_is_better: bool, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int, int]:
    """(rows of the page with rank/position/reason/detail, total rows, pending rows)."""
    from app.services.batch_view import evaluation_row

    category = _category(higher_is_better).label("category")
    # ascending sort key: rank 1 is the best score in the method's direction
    key = Evaluation.score if not higher_is_better else -Evaluation.score
    ranked_key = case((category == -1, key), else_=None)
    # Narrow inner query: the sort and the windows carry ids and keys only; the wide columns
    # (genotype strings, reasons) are joined for the page's rows alone.
    inner = (
        select(
            BatchItem.id.label("item_id"),
            Evaluation.id.label("evaluation_id"),
            category,
            func.row_number()
            .over(order_by=(category, ranked_key.asc().nulls_last(), BatchItem.position))
            .label("list_position"),
            # average rank over ties: first place of the tie group + (group size - 1) / 2
            (
                func.rank().over(partition_by=category, order_by=ranked_key)
                + (func.count().over(partition_by=(category, ranked_key)) - 1) / literal(2.0)
            ).label("avg_rank"),
            func.count().over().label("total"),
            func.sum(case((Evaluation.status.in_(PENDING), 1), else_=0)).over().label("n_pending"),
        )
        .select_from(BatchItem)
        .join(
            BatchEvaluation,
            and_(
                BatchEvaluation.batch_id == BatchItem.batch_id, BatchEvaluation.batch_method_id == method.id
            ),
        )
        .join(
            Evaluation,
            and_(
                Evaluation.id == BatchEvaluation.evaluation_id,
                Evaluation.architecture_id == BatchItem.architecture_id,
            ),
        )
        .where(BatchItem.batch_id == batch.id)
    ).subquery()
    page_ids = (
        select(inner).where(inner.c.list_position > offset, inner.c.list_position <= offset + limit)
    ).subquery()
    rows = session.execute(
        select(
            Evaluation.id,
            Evaluation.method,
            Evaluation.status,
            Evaluation.score,
            Evaluation.score_kind,
            Evaluation.finite,
            Evaluation.reason,
            Evaluation.error,
            Evaluation.cost_s,
            Evaluation.attempts,
            Evaluation.device,
            Evaluation.config_hash,
            Evaluation.seed,
            Evaluation.started_at,
            Evaluation.finished_at,
            Architecture.key,
            Architecture.canonical,
            Architecture.index,
            Architecture.degenerate,
            BatchItem.label,
            BatchItem.position,
            page_ids.c.category,
            page_ids.c.list_position,
            page_ids.c.avg_rank,
            page_ids.c.total,
            page_ids.c.n_pending,
        )
        .select_from(page_ids)
        .join(BatchItem, BatchItem.id == page_ids.c.item_id)
        .join(Evaluation, Evaluation.id == page_ids.c.evaluation_id)
        .join(Architecture, Architecture.id == BatchItem.architecture_id)
        .order_by(page_ids.c.list_position)
    ).all()
    if rows:
        total, pending = int(rows[0].total), int(rows[0].n_pending or 0)
    else:
        total, pending = _counts(session, batch, method)
    page = []
    for r in rows:
        row = evaluation_row(r, r, r)
        detail = row.pop("reason")
        if r.category == -1:
            rank, reason = float(r.avg_rank), None
        else:
            rank, reason = None, _unranked_category(row, higher_is_better)[1]
        row.update(rank=rank, position=int(r.list_position), reason=reason, detail=detail)
        page.append(row)
    return page, total, pending


def _counts(session: Session, batch: Batch, method: BatchMethod) -> tuple[int, int]:
    total, pending = session.execute(
        select(func.count(), func.sum(case((Evaluation.status.in_(PENDING), 1), else_=0)))
        .select_from(BatchItem)
        .join(
            BatchEvaluation,
            and_(
                BatchEvaluation.batch_id == BatchItem.batch_id, BatchEvaluation.batch_method_id == method.id
            ),
        )
        .join(
            Evaluation,
            and_(
                Evaluation.id == BatchEvaluation.evaluation_id,
                Evaluation.architecture_id == BatchItem.architecture_id,
            ),
        )
        .where(BatchItem.batch_id == batch.id)
    ).one()
    return int(total or 0), int(pending or 0)
