"""API keys, scopes, owners and rate limits (docs/security.md).

Wiring, in ``create_app``::

    install_auth(app)
    app.include_router(batches.router, prefix="/v1", dependencies=[route_guard])
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from app.auth.deps import (
    PrincipalDep,
    authorize_route,
    get_principal,
    rate_limit,
    require_scope,
    route_guard,
)
from app.auth.keys import load_pepper
from app.auth.ownership import (
    can_see,
    owner_for_new_batch,
    owner_scoped_idempotency_key,
    visible_batch,
    visible_owner_filter,
)
from app.auth.principal import LOCAL_PRINCIPAL, Principal, Scope
from app.auth.problems import ProblemError, problem_from
from app.auth.ratelimit import RateLimits
from app.auth.state import STATE_ATTR, AuthState
from app.settings import Settings

__all__ = [
    "LOCAL_PRINCIPAL",
    "Principal",
    "PrincipalDep",
    "ProblemError",
    "Scope",
    "authorize_route",
    "can_see",
    "get_principal",
    "install_auth",
    "owner_for_new_batch",
    "owner_scoped_idempotency_key",
    "rate_limit",
    "require_scope",
    "route_guard",
    "visible_batch",
    "visible_owner_filter",
]


async def _problem_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_from(exc)


def install_auth(
    app: FastAPI,
    settings: Settings | None = None,
    sessions: sessionmaker[Session] | None = None,
    rate_limits: RateLimits | None = None,
) -> AuthState:
    """Attach what the guards need and the handler of their 401/403/429 problems. The defaults
    are the service's settings and database; tests pass their own."""
    if settings is None:
        from app.settings import get_settings

        settings = get_settings()
    if sessions is None:
        from app.db import get_sessionmaker

        sessions = get_sessionmaker()
    pepper = None if settings.auth == "off" else load_pepper(settings)
    state = AuthState(settings, sessions, pepper, rate_limits or RateLimits(settings))
    setattr(app.state, STATE_ATTR, state)
    app.add_exception_handler(ProblemError, _problem_handler)
    return state
