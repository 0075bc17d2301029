"""Shared request dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from app.db import session_scope
from app.services.ranking_cache import PageCache, RankingCache, VersionCache
from app.settings import Settings, get_settings


def get_session() -> Iterator[Session]:
    """One session per request: committed on success, rolled back on any error."""
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


# The dependencies that do no I/O are coroutines: FastAPI runs a plain ``def`` dependency in its
# thread pool, one hop per dependency per request, which was a large share of a cached page's cost.


async def request_settings() -> Settings:
    """The settings (tests override this dependency to serve a request under other settings)."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(request_settings)]


async def get_ranking_cache(request: Request) -> RankingCache:
    return request.app.state.ranking_cache  # type: ignore[no-any-return]


RankingCacheDep = Annotated[RankingCache, Depends(get_ranking_cache)]


async def get_page_cache(request: Request) -> PageCache:
    return request.app.state.page_cache  # type: ignore[no-any-return]


PageCacheDep = Annotated[PageCache, Depends(get_page_cache)]


async def get_version_cache(request: Request) -> VersionCache:
    return request.app.state.version_cache  # type: ignore[no-any-return]


VersionCacheDep = Annotated[VersionCache, Depends(get_version_cache)]


# Path/query values declared with patterns so that schema-valid requests are never rejected by the
# route and schema-invalid ones are rejected by validation, naming the field.
BatchId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="batch id")]
MethodQuery = Annotated[
    str | None,
    Query(
        max_length=64, pattern=r"^[A-Za-z0-9_.:@+#-]+$", description="method alias (see the batch's methods)"
    ),
]
