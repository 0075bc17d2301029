"""FastAPI app factory. Never imports torch: the API starts fast and stays small."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app import batch_versions
from app.api import architectures, batches, catalog, health, problems, reports
from app.api.listing import router as listing_router
from app.api.middleware import RequestGuard
from app.api.models import problem_responses
from app.auth import install_auth, route_guard
from app.services.ranking_cache import PageCache, RankingCache, VersionCache
from app.settings import get_settings
from app.ui import install as install_ui


def _operation_id(route: APIRoute) -> str:
    """Stable, readable operationIds: the endpoint's function name in camelCase (``get_ranking`` →
    ``getRanking``), so renaming a handler is the only way to change one."""
    head, *rest = route.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="FastArchRank",
        docs_url=None,  # /docs and /redoc come from app.ui with local assets
        redoc_url=None,
        version="1.0",
        summary="Rank neural architectures with FEAR, training baselines and zero-cost proxies.",
        description=(
            "Post a batch of genotypes (NAS-Bench-201, NATS-Bench size space, DARTS, NAS-Bench-301), poll "
            "its status, read rankings, correlation reports against ground truth, plots and exports. "
            f"Limits: {settings.max_items_per_batch} items per batch, {settings.max_request_bytes} request "
            f"bytes, {settings.max_genotype_chars} characters per genotype. Every error is RFC 9457 "
            "problem details (application/problem+json) with a machine-readable `code` and, for "
            "validation errors, the field list `errors[]`."
        ),
        generate_unique_id_function=_operation_id,
    )
    problems.install(app)

    install_auth(app, settings)

    # Health and the UI pages stay open; the UI calls the API with the key from its page header.
    guarded: dict[str, Any] = {"dependencies": [route_guard], "responses": problem_responses(401, 403, 429)}
    app.include_router(batches.router, prefix="/v1", **guarded)
    app.include_router(reports.router, prefix="/v1", **guarded)
    app.include_router(architectures.router, prefix="/v1", **guarded)
    app.include_router(catalog.router, prefix="/v1", **guarded)
    app.include_router(health.router, prefix="/v1")
    app.include_router(listing_router, prefix="/v1", **guarded)
    install_ui(app)

    app.state.ranking_cache = RankingCache(settings.ranking_cache_rows)
    app.state.page_cache = PageCache(settings.ranking_cache_rows)
    app.state.version_cache = VersionCache(settings.ranking_version_ttl_s)
    batch_versions.subscribe(app.state.version_cache)
    app.add_middleware(RequestGuard, max_bytes=settings.max_request_bytes)
    return app
