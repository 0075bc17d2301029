"""Shared request dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from app.db import session_scope
from app.services.ranking_cache import PageCache, RankingCache
from app.settings import Settings, get_settings


def get_session() -> Iterator[Session]:
    """One session per request: committed on success, rolled back on any error."""
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_ranking_cache(request: Request) -> RankingCache:
    return request.app.state.ranking_cache  # type: ignore[no-any-return]


RankingCacheDep = Annotated[RankingCache, Depends(get_ranking_cache)]


def get_page_cache(request: Request) -> PageCache:
    return request.app.state.page_cache  # type: ignore[no-any-return]


PageCacheDep = Annotated[PageCache, Depends(get_page_cache)]


# Path/query values declared with patterns so that schema-valid requests are never rejected by the
# route and schema-invalid ones are rejected by validation, naming the field.
BatchId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="batch id")]
MethodQuery = Annotated[
    str | None,
    Query(
        max_length=64, pattern=r"^[A-Za-z0-9_.:@+#-]+$", description="method alias (see the batch's methods)"
    ),
]
