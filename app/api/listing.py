"""``GET /v1/batches``: the batches, newest first, filtered, with cursor pagination."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from app.api import listing_cursor
from app.api.deps import SessionDep, SettingsDep
from app.api.listing_models import BatchList, BatchListEntry, ListingCounts, ListingStatus
from app.api.models import problem_responses
from app.auth import PrincipalDep, visible_owner_filter
from app.errors import InputError
from app.models import PENDING, QUEUED, Batch, BatchEvaluation, BatchItem, BatchMethod, Evaluation
from app.services import funnel
from app.services.batch_view import overall_status
from app.settings import Settings

router = APIRouter(tags=["batches"])


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A timestamp with its offset (no bare numbers: pydantic would read `0.5` as seconds since 1970).
RFC3339 = (
    r"^[12]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)


def _timestamp(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InputError(["query", name], f"{name} is not a valid time, e.g. 2026-01-31T12:00:00Z") from None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _has_pending() -> ColumnElement[bool]:
    """Not finished, as ``overall_status`` decides it: an evaluation queued or running, or a method
    entry with no evaluation linked yet (a funnel's expensive stage, created when its cheap stage
    ends: ``funnel.unlinked_method``)."""
    evaluation_pending = exists().where(
        BatchEvaluation.batch_id == Batch.id,
        Evaluation.id == BatchEvaluation.evaluation_id,
        Evaluation.status.in_(PENDING),
    )
    stage_waiting = exists().where(BatchMethod.batch_id == Batch.id, funnel.unlinked_method())
    return or_(evaluation_pending, stage_waiting)


def _nothing_started() -> ColumnElement[bool]:
    """Status 'queued' as ``overall_status`` decides it: evaluations, and every one still queued."""
    of_batch = (BatchEvaluation.batch_id == Batch.id, Evaluation.id == BatchEvaluation.evaluation_id)
    return and_(
        exists().where(*of_batch, Evaluation.status == QUEUED),
        ~exists().where(*of_batch, Evaluation.status != QUEUED),
    )


def _scope(**filters: object) -> str:
    """What a cursor is bound to: the filters of the listing it came from."""
    canon = json.dumps(
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items()}, sort_keys=True
    )
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _status_counts(session: Session, ids: list[str]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {i: {} for i in ids}
    for batch_id, st, n in session.execute(
        select(BatchEvaluation.batch_id, Evaluation.status, func.count())
        .join(Evaluation, Evaluation.id == BatchEvaluation.evaluation_id)
        .where(BatchEvaluation.batch_id.in_(ids))
        .group_by(BatchEvaluation.batch_id, Evaluation.status)
    ):
        found[batch_id][st] = n
    return found


def _listing_counts(counts: dict[str, int]) -> ListingCounts:
    known = set(ListingCounts.model_fields)
    return ListingCounts(**{k: v for k, v in counts.items() if k in known})


def _item_counts(session: Session, ids: list[str]) -> dict[str, int]:
    return dict(
        session.execute(  # type: ignore[arg-type]
            select(BatchItem.batch_id, func.count())
            .where(BatchItem.batch_id.in_(ids))
            .group_by(BatchItem.batch_id)
        ).all()
    )


@router.get(
    "/batches",
    response_model=BatchList,
    summary="List batches, newest first, with filters and cursor pagination",
    # 400: `cursor` is malformed, forged, or was issued for other filters
    responses=problem_responses(400, 422, 503),
)
def list_batches(
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    owner: Annotated[str | None, Query(max_length=128, description="only this owner's batches")] = None,
    status: Annotated[
        ListingStatus | None,
        Query(
            description="'queued': nothing has started yet; 'running': not finished, something is queued or "
            "running (its status is 'queued' or 'running'); 'done': nothing is"
        ),
    ] = None,
    created_after: Annotated[
        str | None,
        Query(
            pattern=RFC3339,
            json_schema_extra={"format": "date-time"},
            description="RFC 3339 with offset; only batches created at or after this time",
        ),
    ] = None,
    created_before: Annotated[
        str | None,
        Query(
            pattern=RFC3339,
            json_schema_extra={"format": "date-time"},
            description="RFC 3339 with offset; only batches created before this time",
        ),
    ] = None,
    label: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="substring (any case) of an item label or the owner"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="entries per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="the `next` token of the previous page")
    ] = None,
) -> BatchList:
    if limit > settings.max_page_size:
        raise InputError(["query", "limit"], f"limit must be at most {settings.max_page_size}")
    after = _timestamp("created_after", created_after)
    before = _timestamp("created_before", created_before)
    filters = ListingFilters(
        owner=owner,
        status=status,
        created_after=_utc(after) if after else None,
        created_before=_utc(before) if before else None,
        label=label,
    )
    # Admins see everything; anyone else their owner's batches. The viewer is bound into the cursor.
    viewer = f"{principal.owner}|{'admin' if principal.is_admin else 'owner'}"
    return list_page(session, settings, filters, limit, cursor, visible_owner_filter(principal), viewer)


@dataclass(frozen=True)
class ListingFilters:
    owner: str | None = None
    status: ListingStatus | None = None
    created_after: datetime | None = None  # UTC
    created_before: datetime | None = None  # UTC
    label: str | None = None


def list_page(
    session: Session,
    settings: Settings,
    filters: ListingFilters,
    limit: int,
    cursor: str | None,
    visible: ColumnElement[bool] | None = None,
    viewer: str = "",
) -> BatchList:
    """One page of the listing. ``visible`` restricts it to the batches the caller may see (access
    control adds its owner clause here) and ``viewer`` names the caller: both are bound into the
    cursor, so one caller's token cannot page through what another sees."""
    scope = _scope(viewer=viewer, **asdict(filters))
    secret = listing_cursor.secret_of(settings)
    query = select(Batch).options(selectinload(Batch.methods))
    if visible is not None:
        query = query.where(visible)
    if filters.owner is not None:
        query = query.where(Batch.owner == filters.owner)
    if filters.status == "queued":
        query = query.where(_nothing_started())
    elif filters.status == "running":
        query = query.where(_has_pending())
    elif filters.status == "done":
        query = query.where(~_has_pending())
    if filters.created_after is not None:
        query = query.where(Batch.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(Batch.created_at < filters.created_before)
    if filters.label is not None:
        pattern = _like(filters.label)
        query = query.where(
            or_(
                Batch.owner.ilike(pattern, escape="\\"),
                exists().where(BatchItem.batch_id == Batch.id, BatchItem.label.ilike(pattern, escape="\\")),
            )
        )
    if cursor is not None:
        pos = listing_cursor.decode(cursor, scope, secret)
        query = query.where(
            or_(
                Batch.created_at < pos.created_at,
                and_(Batch.created_at == pos.created_at, Batch.id < pos.batch_id),
            )
        )
    batches = list(session.scalars(query.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)))
    page, more = batches[:limit], len(batches) > limit
    ids = [b.id for b in page]
    counts = _status_counts(session, ids)
    items = _item_counts(session, ids)
    entries = [
        BatchListEntry(
            batch_id=b.id,
            owner=b.owner,
            created_at=_utc(b.created_at),
            space=b.space,
            dataset=b.dataset,
            methods=[m.alias for m in b.methods],
            items=items.get(b.id, 0),
            counts=_listing_counts(counts[b.id]),
            status=overall_status(counts[b.id], funnel.waiting(b)),
        )
        for b in page
    ]
    next_token = (
        listing_cursor.encode(listing_cursor.Position(_utc(page[-1].created_at), page[-1].id), scope, secret)
        if more
        else None
    )
    return BatchList(items=entries, next=next_token, limit=limit)
