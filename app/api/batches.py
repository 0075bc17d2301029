"""Batches: submit, poll, rank."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy.exc import IntegrityError

from app.api.deps import BatchId, MethodQuery, RankingCacheDep, SessionDep, SettingsDep
from app.api.models import READ_ERRORS, problem_responses
from app.db import session_scope
from app.errors import InputError
from app.schemas import BatchCreate, BatchCreated, BatchStatus, Ranking
from app.services import batch_view
from app.services.queue import enqueue
from app.services.submission import submit

# printable ASCII without spaces at the ends: keys are compared byte for byte and echoed in logs
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"

router = APIRouter(tags=["batches"])


@router.post(
    "/batches",
    status_code=201,
    response_model=BatchCreated,
    summary="Submit a batch of genotypes to evaluate with one or more methods",
    responses={
        200: {
            "model": BatchCreated,
            "description": "replay of an earlier request with the same key and body",
        },
        **problem_responses(400, 409, 413, 415, 422, 503),
    },
)
def create_batch(
    body: BatchCreate,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=128,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="printable ASCII, at most 128 characters; same key and body → same response, "
            "no duplicate batch",
        ),
    ] = None,
) -> Any:
    # The session is managed here (not by the dependency) because tasks may only be enqueued
    # after the commit has succeeded.
    try:
        with session_scope() as session:
            result = submit(session, body, settings, idempotency_key)
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key won the race: answer with its stored response.
        with session_scope() as session:
            result = submit(session, body, settings, idempotency_key)
    if result.replayed:
        response.status_code = 200
    elif result.to_enqueue:
        enqueue(result.to_enqueue)
    return result.response()


@router.get(
    "/batches/{batch_id}",
    response_model=BatchStatus,
    summary="Status counts, live progress, timings, ETA",
    responses=problem_responses(*READ_ERRORS),
)
def get_batch(batch_id: BatchId, session: SessionDep, settings: SettingsDep) -> Any:
    batch = batch_view.get_batch(session, batch_id)
    return batch_view.status(session, batch, settings)


@router.get(
    "/batches/{batch_id}/ranking",
    response_model=Ranking,
    summary="Ranking of the batch under one method",
    responses=problem_responses(*READ_ERRORS),
)
def get_ranking(
    batch_id: BatchId,
    session: SessionDep,
    settings: SettingsDep,
    cache: RankingCacheDep,
    method: MethodQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    if limit > settings.max_page_size:
        raise InputError(["query", "limit"], f"limit must be at most {settings.max_page_size}")
    batch = batch_view.get_batch(session, batch_id)
    return batch_view.ranking_page(session, batch, method, cache, limit, offset)
