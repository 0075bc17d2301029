"""Engine and session factory. SQLite (embedded default) and Postgres share every code path."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets the API read while the embedded worker writes; busy_timeout absorbs
            # short write contention instead of failing with "database is locked".
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.effective_database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """Commit on success, roll back on any error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# SQLSTATEs after which running the same transaction again is the documented remedy.
RETRY_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def is_retryable_conflict(exc: BaseException) -> bool:
    """A deadlock or serialization failure: nothing is wrong with the request, try it again."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRY_SQLSTATES


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached (down, restarting, connection dropped) — or a conflict."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated or is_retryable_conflict(exc))


def retrying(
    fn: Callable[[], T],
    attempts: int,
    backoff_s: float,
    retry_if: Callable[[BaseException], bool] = is_unavailable,
    what: str = "database call",
) -> T:
    """Call ``fn`` up to ``attempts`` times while it fails with an error ``retry_if`` accepts,
    sleeping ``backoff_s``, then twice that, ... between tries; the last error is raised."""
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not retry_if(exc):
                raise
            log.warning(
                "%s failed (%s), try %d of %d in %.1f s",
                what,
                type(exc).__name__,
                attempt + 1,
                attempts,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
