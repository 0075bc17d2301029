"""What the auth dependencies need at request time, kept on ``app.state`` by ``install_auth``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from app.settings import Settings

if TYPE_CHECKING:
    from app.auth.ratelimit import RateLimits


@dataclass
class AuthState:
    settings: Settings
    sessions: sessionmaker[Session]
    pepper: bytes | None  # None only with auth="off": keys are never checked
    rate_limits: RateLimits


STATE_ATTR = "fastarchrank_auth"


def auth_state(request: Request) -> AuthState:
    state = getattr(request.app.state, STATE_ATTR, None)
    if state is None:
        raise RuntimeError("install_auth(app) was not called before including the guarded routers")
    return state  # type: ignore[no-any-return]
