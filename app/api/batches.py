"""Batches: submit, poll, rank."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.concurrency import run_in_threadpool

from app.api.batch_control_models import BatchCancelled, EvaluationChanges
from app.api.conditional import conditional_model
from app.api.deps import BatchId, PageCacheDep, RankingCacheDep, SessionDep, SettingsDep, VersionCacheDep
from app.api.models import READ_ERRORS, problem_responses
from app.auth import Principal, PrincipalDep, can_see, owner_for_new_batch, owner_scoped_idempotency_key
from app.db import session_scope
from app.errors import InputError, NotFound
from app.schemas import BatchCreate, BatchCreated, BatchStatus, Ranking
from app.services import batch_control, batch_view, composite_view
from app.services.ranking_cache import RankingCache, etag_of, fingerprint, matches
from app.services.submission import create

# printable ASCII without spaces at the ends: keys are compared byte for byte and echoed in logs
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"

router = APIRouter(tags=["batches"])

# A method alias, or a composite spec: an unescaped "+" in a query string arrives as a space.
RankingMethodQuery = Annotated[
    str | None,
    Query(
        max_length=512,
        pattern=r"^[A-Za-z0-9_.:@+# -]+$",
        description="method alias (see the batch's methods), a named composite of options.composites, or "
        "composite:<alias>+<alias>... (mean of per-measure ranks, lower is better)",
    ),
]
CompositeMissingQuery = Annotated[
    Literal["worst", "exclude"] | None,
    Query(description="composites: a missing/NaN measure gets its worst rank (default) or excludes the item"),
]
CompositeInfQuery = Annotated[
    Literal["order", "unusable"] | None,
    Query(description="composites: ±inf ranks by its order (default) or counts as missing"),
]


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
    principal: PrincipalDep,
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
    # The submission manages its own transaction (retried on deadlocks); tasks are published
    # only after the commit.
    owner = owner_for_new_batch(principal, body.owner)
    stored_key = owner_scoped_idempotency_key(owner, idempotency_key) if idempotency_key else None
    result = create(body, settings, stored_key, owner)
    if result.replayed:
        response.status_code = 200
    return result.response()


@router.get(
    "/batches/{batch_id}",
    response_model=BatchStatus,
    summary="Status counts, live progress, timings, ETA (ETag: If-None-Match → 304)",
    responses={304: {"description": "not modified since the ETag given"}, **problem_responses(*READ_ERRORS)},
)
def get_batch(
    batch_id: BatchId,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Any:
    batch = batch_view.get_batch(session, batch_id, principal)
    return conditional_model(BatchStatus, batch_view.status(session, batch, settings), if_none_match)


@router.get(
    "/batches/{batch_id}/ranking",
    response_model=Ranking,
    summary="Ranking of the batch under one method (finished rankings carry an ETag: If-None-Match → 304)",
    responses={304: {"description": "not modified since the ETag given"}, **problem_responses(*READ_ERRORS)},
)
async def get_ranking(
    batch_id: BatchId,
    settings: SettingsDep,
    cache: RankingCacheDep,
    pages: PageCacheDep,
    versions: VersionCacheDep,
    principal: PrincipalDep,
    method: RankingMethodQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    composite_missing: CompositeMissingQuery = None,
    composite_inf: CompositeInfQuery = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Any:
    """The most polled route, so it is a coroutine that hops into the thread pool once for its one
    query (a ``def`` route with a session dependency takes three hops)."""
    if limit > settings.max_page_size:
        raise InputError(["query", "limit"], f"limit must be at most {settings.max_page_size}")
    # A page is a function of the batch's version (bumped at commit by every change a page shows,
    # pending or finished) and of the request, so one query (the batch's owner and version) decides
    # between 304, a rendered page from memory, and building it. Only building reads the batch's
    # methods and evaluations; an unknown method fails there, and an error is never cached.
    head = versions.get(batch_id)
    if head is None:
        head = await run_in_threadpool(_owner_and_version, batch_id)
        versions.put(batch_id, *head)
    owner, version = head
    if not can_see(principal, owner):
        raise NotFound(f"batch {batch_id!r}")  # another owner's batch: the same 404 as a missing one
    etag = etag_of(batch_id, method, composite_missing, composite_inf, version, limit, offset)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    body = pages.get(etag)
    if body is None:
        args = (batch_id, principal, cache, method, limit, offset, composite_missing, composite_inf)
        built, rows = await run_in_threadpool(_build_ranking, *args)
        pages.put(etag, built, rows)
        body = built
    return Response(body, media_type="application/json", headers=headers)


def _owner_and_version(batch_id: str) -> tuple[str | None, int]:
    with session_scope() as session:
        return batch_view.owner_and_version(session, batch_id)


def _build_ranking(
    batch_id: str,
    principal: Principal,
    cache: RankingCache,
    method: str | None,
    limit: int,
    offset: int,
    composite_missing: str | None,
    composite_inf: str | None,
) -> tuple[bytes, int]:
    """The rendered page and its row count (rendering happens here too: off the event loop)."""
    with session_scope() as session:
        batch = batch_view.get_batch(session, batch_id, principal)
        rules = composite_view.rules_from_query(composite_missing, composite_inf)
        resolved = composite_view.resolve_method(batch, method, rules)
        if isinstance(resolved, composite_view.CompositeMethod):
            page = composite_view.ranking_page(session, batch, resolved, limit, offset)
        else:
            fp = fingerprint(session, batch.id, resolved.id)  # None while pending: the live SQL ranking
            page = batch_view.ranking_page(session, batch, resolved, cache, limit, offset, fp)
    return Ranking.model_validate(page).model_dump_json().encode(), len(page["items"])


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=BatchCancelled,
    summary="Cancel a batch: queued evaluations end 'cancelled', running ones stop at their next heartbeat",
    responses=problem_responses(404, 503),
)
def cancel_batch(batch_id: BatchId, settings: SettingsDep, principal: PrincipalDep) -> Any:
    # Evaluations another live batch also uses keep going; cancelling again changes nothing.
    return asdict(batch_control.cancel(batch_id, principal, settings))


@router.delete(
    "/batches/{batch_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a batch, its items and ground truth; evaluations no other batch uses go with it",
    responses={204: {"description": "deleted"}, **problem_responses(404, 503)},
)
def delete_batch(batch_id: BatchId, settings: SettingsDep, principal: PrincipalDep) -> Response:
    batch_control.remove(batch_id, principal, settings)
    return Response(status_code=204)


@router.get(
    "/batches/{batch_id}/evaluations",
    response_model=EvaluationChanges,
    summary="The batch's evaluations that changed since a cursor (ETag: If-None-Match → 304)",
    responses={304: {"description": "not modified since the ETag given"}, **problem_responses(*READ_ERRORS)},
)
def list_batch_evaluations(
    batch_id: BatchId,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    after: Annotated[
        str | None,
        Query(max_length=20, pattern=r"^[0-9]+$", description="the `next` of the previous poll; none: all"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Any:
    if limit > settings.max_page_size:
        raise InputError(["query", "limit"], f"limit must be at most {settings.max_page_size}")
    batch = batch_view.get_batch(session, batch_id, principal)
    page = batch_control.changes(
        session, batch, batch_control.parse_cursor(after), limit, settings.poll_grace_s
    )
    return conditional_model(EvaluationChanges, asdict(page), if_none_match)
