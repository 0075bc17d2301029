"""Batches: submit, poll, rank."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from app.api.deps import RankingCacheDep, SessionDep, SettingsDep
from app.catalog.methods import all_methods
from app.errors import InputError
from app.schemas import BatchCreate, BatchCreated, BatchStatus, Ranking
from app.services import batch_view
from app.services.ranking_cache import fingerprint
from app.services.reports.ranking import rank_rows
from app.services.submission import create

router = APIRouter(tags=["batches"])


@router.post(
    "/batches",
    status_code=201,
    response_model=BatchCreated,
    summary="Submit a batch of genotypes to evaluate with one or more methods",
    responses={
        200: {"description": "replay of an earlier request with the same Idempotency-Key and body"},
        409: {"description": "Idempotency-Key reused with a different body"},
        413: {"description": "request body too large"},
        422: {"description": "invalid input; `detail[].loc` names the field, `msg` says what to change"},
    },
)
def create_batch(
    body: BatchCreate,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=128, description="same key and body → same response; no duplicate batch"),
    ] = None,
) -> Any:
    # The submission manages its own transaction (retried on deadlocks); tasks are published
    # only after the commit.
    result = create(body, settings, idempotency_key)
    if result.replayed:
        response.status_code = 200
    return result.response()


@router.get(
    "/batches/{batch_id}", response_model=BatchStatus, summary="Status counts, live progress, timings, ETA"
)
def get_batch(batch_id: str, session: SessionDep, settings: SettingsDep) -> Any:
    batch = batch_view.get_batch(session, batch_id)
    return batch_view.status(session, batch, settings)


@router.get(
    "/batches/{batch_id}/ranking", response_model=Ranking, summary="Ranking of the batch under one method"
)
def get_ranking(
    batch_id: str,
    session: SessionDep,
    settings: SettingsDep,
    cache: RankingCacheDep,
    method: Annotated[
        str | None, Query(max_length=64, description="method alias (see the batch's methods)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    if limit > settings.max_page_size:
        raise InputError(["query", "limit"], f"limit must be at most {settings.max_page_size}")
    batch = batch_view.get_batch(session, batch_id)
    entry = batch_view.method_by_alias(batch, method)
    info = all_methods().get(entry.name)
    higher = info.higher_is_better if info else True
    key = (batch.id, entry.id)
    fp = fingerprint(session, batch.id, entry.id)
    listing = cache.get(key, fp)
    if listing is None:
        rows = batch_view.method_rows(session, batch, entry)
        for r in rows:
            r["detail"] = r.pop("reason")
        listing = rank_rows(rows, higher_is_better=higher)
        cache.put(key, fp, listing)
    # Copies: the cached listing is shared between requests.
    page = [dict(r) for r in listing[offset : offset + limit]]
    gt_set = batch.options.get("ground_truth_set", "client")
    gt = batch_view.ground_truth_map(session, batch, gt_set, {r["architecture_key"] for r in page})
    for r in page:
        r["ground_truth"] = gt.get(r["architecture_key"])
    batch_view.attach_details(session, page)
    items = []
    for r in page:
        score = r["score"]
        finite = score is not None and r.get("finite") is True
        items.append(
            {
                **r,
                "score": score if finite else None,
                "score_repr": None if finite or score is None else str(score),
                "reason": r["reason"]
                if r["reason"] is None or not r.get("detail")
                else f"{r['reason']} ({r['detail']})",
            }
        )
    return {
        "batch_id": batch.id,
        "method": entry.alias,
        "higher_is_better": higher,
        "items": items,
        "total": len(listing),
        "limit": limit,
        "offset": offset,
    }
