"""FastAPI dependencies: who is calling (``Principal``), may they (scopes), how often (rate limits).

Keys arrive as ``Authorization: Bearer far_...`` or ``X-API-Key: far_...``. With ``auth="auto"`` a
request needs no key when the server is configured for a loopback host *and* the request arrived on a
loopback socket; it then acts as the local owner with every scope (docs/security.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.auth.keys import verify_key
from app.auth.principal import LOCAL_PRINCIPAL, Principal, Scope
from app.auth.problems import Forbidden, Unauthorized
from app.auth.ratelimit import bucket_for, identity_of
from app.auth.state import auth_state

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="far_<prefix>_<secret>",
    description="An API key from `fastarchrank keys create`.",
)
_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The same API key, for clients that cannot set Authorization.",
)

MISSING_KEY = (
    "this server requires an API key: send `Authorization: Bearer far_...` "
    "(create one with `fastarchrank keys create --owner NAME`)"
)

# POST routes that only read (a report over several batches); every other non-GET needs `submit`.
# Paths as the routers declare them; FastAPI may hand the route over with or without the /v1 prefix.
READ_ONLY_POSTS = frozenset({"/reports"})
API_PREFIX = "/v1"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def arrived_on_loopback(request: Request) -> bool:
    """The socket the request came in on is a loopback address (ASGI ``scope["server"]``). Packets
    from other machines never arrive on 127.0.0.0/8 or ::1, so with ``serve --host 0.0.0.0`` remote
    callers still need a key even when ``host`` in the settings says 127.0.0.1."""
    server = request.scope.get("server")
    return server is not None and is_loopback_host(str(server[0]))


async def get_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> Principal:
    """A coroutine: without a key there is no I/O, so no thread-pool hop; a presented key is
    checked against the database in the pool."""
    state = auth_state(request)
    settings = state.settings
    if settings.auth == "off":
        return LOCAL_PRINCIPAL
    presented = bearer.credentials if bearer is not None else header_key
    if not presented:
        if settings.auth == "auto" and is_loopback_host(settings.host) and arrived_on_loopback(request):
            return LOCAL_PRINCIPAL
        raise Unauthorized(MISSING_KEY)
    assert state.pepper is not None  # loaded by install_auth whenever auth is not "off"
    # A presented key is always checked, also on loopback: a bad key is a 401, never silently "local".
    pepper = state.pepper

    def verify() -> Principal:
        with state.sessions.begin() as session:
            return verify_key(session, pepper, presented, settings.auth_last_used_resolution_s)

    return await run_in_threadpool(verify)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_scope(scope: Scope | str) -> Callable[[Principal], Principal]:
    """A dependency that answers 403 unless the caller's key has ``scope`` (admin has all)."""
    wanted = Scope(scope)

    def _require(principal: PrincipalDep) -> Principal:
        check_scope(principal, wanted)
        return principal

    _require.__name__ = f"require_scope_{wanted.value}"
    return _require


def check_scope(principal: Principal, wanted: Scope) -> None:
    if not principal.allows(wanted):
        raise Forbidden(
            f"this key lacks the '{wanted.value}' scope (it has: "
            f"{', '.join(sorted(s.value for s in principal.scopes)) or 'none'}); create a key with "
            f"--scope {wanted.value}"
        )


def scope_for_request(request: Request) -> Scope:
    """GET/HEAD/OPTIONS and the read-only POSTs need `read`; anything that changes state, `submit`."""
    if request.method in _READ_METHODS:
        return Scope.READ
    route = request.scope.get("route")
    path = str(getattr(route, "path", request.url.path))
    read_only = path in READ_ONLY_POSTS or path.removeprefix(API_PREFIX) in READ_ONLY_POSTS
    return Scope.READ if read_only else Scope.SUBMIT


def _client_host(request: Request) -> str | None:
    return request.client.host if request.client else None


def authorize_route(request: Request, principal: PrincipalDep) -> Principal:
    """Router-level guard: the scope follows the HTTP method, then the rate limit of that scope."""
    scope = scope_for_request(request)
    check_scope(principal, scope)
    auth_state(request).rate_limits.check(bucket_for(scope), identity_of(principal, _client_host(request)))
    return principal


def rate_limit(request: Request, principal: PrincipalDep) -> None:
    """Only the rate limit (scope by method), for routes that check scopes another way."""
    auth_state(request).rate_limits.check(
        bucket_for(scope_for_request(request)), identity_of(principal, _client_host(request))
    )


# One line per include_router: `dependencies=[route_guard]`.
route_guard = Depends(authorize_route)
