"""A guarded test app: the real batches and catalog routers plus two probe routes, behind
``install_auth`` and ``route_guard`` exactly as create_app is meant to wire them."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.auth import PrincipalDep, install_auth, route_guard, visible_batch
from app.auth.keys import CreatedKey, create_key, load_pepper
from app.auth.principal import Scope
from app.settings import Settings

probe = APIRouter()


@probe.get("/whoami")
def whoami(principal: PrincipalDep) -> dict[str, Any]:
    return {"owner": principal.owner, "scopes": sorted(principal.scopes), "key_id": principal.key_id}


@probe.post("/probe/submit")
def probe_submit(principal: PrincipalDep) -> dict[str, Any]:
    return {"owner": principal.owner}


@probe.get("/probe/batches/{batch_id}")
def probe_batch(batch_id: str, principal: PrincipalDep) -> dict[str, Any]:
    from app.db import session_scope

    with session_scope() as session:
        batch = visible_batch(session, principal, batch_id)
        return {"id": batch.id, "owner": batch.owner}


def auth_settings(**overrides: Any) -> Settings:
    overrides.setdefault("rate_limit_namespace", uuid.uuid4().hex)
    return Settings(**overrides)


def guarded_app(settings: Settings, sessions: sessionmaker[Session] | None = None) -> FastAPI:
    from app.api import batches, catalog, reports
    from app.main import create_app

    app = FastAPI()
    # the service's own handlers (404 body, validation errors, ...) so responses look like production
    app.exception_handlers.update(create_app().exception_handlers)
    install_auth(app, settings=settings, sessions=sessions)
    for module in (batches, catalog, reports):
        app.include_router(module.router, prefix="/v1", dependencies=[route_guard])
    app.include_router(probe, prefix="/v1", dependencies=[route_guard])
    return app


def client_for(app: FastAPI, base_url: str = "http://testserver", **kw: Any) -> TestClient:
    return TestClient(app, base_url=base_url, raise_server_exceptions=False, **kw)


def new_key(
    settings: Settings,
    owner: str = "ana",
    scopes: tuple[Scope, ...] = (Scope.READ, Scope.SUBMIT),
    sessions: sessionmaker[Session] | None = None,
    **kw: Any,
) -> CreatedKey:
    if sessions is None:
        from app.db import get_sessionmaker

        sessions = get_sessionmaker()
    with sessions.begin() as session:
        return create_key(session, load_pepper(settings), owner, scopes, **kw)


def bearer(key: CreatedKey | str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key if isinstance(key, str) else key.secret}"}
