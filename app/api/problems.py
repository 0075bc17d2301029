"""Every error leaves the API as problem details (app.errors.Problem), whoever raised it: our own
errors, FastAPI's validation, Starlette's 404/405, a database or broker outage (503 + Retry-After),
and anything unexpected (500, logged, no internals sent)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import PROBLEM_MEDIA_TYPE, ApiError, FieldError, Problem, problem

log = logging.getLogger(__name__)

# How long a client should wait before retrying after an outage, seconds (a restart of the dependency).
OUTAGE_RETRY_AFTER_S = 5


def problem_response(body: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=body.status,
        headers=dict(headers or {}),
        media_type=PROBLEM_MEDIA_TYPE,
    )


def problem_bytes(body: Problem) -> bytes:
    return body.model_dump_json().encode()


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        # FastAPI says only "JSON decode error"; the parser's reason and the offset are the fix.
        loc = list(error.get("loc", []))
        reason = (error.get("ctx") or {}).get("error") or "not JSON"
        where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return f"the body is not valid JSON: {reason}{where}; send one JSON object"
    return str(error.get("msg", ""))


def validation_fields(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """Pydantic errors carry the offending input and a docs URL; keep what a client needs."""
    return [
        FieldError(loc=list(e.get("loc", [])), msg=_message(e), type=str(e.get("type", "value_error")))
        for e in errors
    ]


def summary(fields: Sequence[FieldError]) -> str:
    if not fields:
        return "the request is invalid"
    first = fields[0]
    text = f"{_dotted(first.loc)}: {first.msg}" if first.loc else first.msg
    return text if len(fields) == 1 else f"{text} (and {len(fields) - 1} more; see errors[])"


def _outage_classes() -> tuple[type[BaseException], ...]:
    """Exceptions that mean a dependency (database, broker) is unreachable, not that the request is bad."""
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    classes: list[type[BaseException]] = [OperationalError, InterfaceError, PoolTimeout]
    try:
        from kombu.exceptions import OperationalError as BrokerError

        classes.append(BrokerError)
    except ImportError:  # pragma: no cover - kombu ships with celery
        pass
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeout

        classes += [RedisConnectionError, RedisTimeout]
    except ImportError:  # pragma: no cover
        pass
    return tuple(classes)


def dependency_of(exc: BaseException) -> str:
    module = type(exc).__module__
    return "database" if module.startswith("sqlalchemy") else "broker"


def allowed_methods(request: Request, named: str | None) -> list[str]:
    """Every documented method of this request's path, plus what Starlette named (only the first
    route of the path: one path can have several routes, e.g. GET and DELETE of a batch)."""
    methods = {m.strip().upper() for m in (named or "").split(",") if m.strip()}
    path = request.url.path
    for template, item in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), path):
            methods |= {m.upper() for m in item if m.upper() in _HTTP_METHODS}
    return sorted(methods)


_HTTP_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        fields = exc.errors_list()
        return problem_response(problem(exc.status_code, exc.detail, fields), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = validation_fields(list(exc.errors()))
        return problem_response(problem(422, summary(fields), fields))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        headers = exc.headers
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path!r}; see /docs for the API"
        elif exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path!r}"
            # Starlette names only the first route of the path; one path can have several routes.
            named = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
            headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request, named))}
        elif exc.status_code == 400 and "parsing the body" in detail:
            detail = "the request body could not be parsed; send UTF-8 JSON"
        return problem_response(problem(exc.status_code, detail), headers)

    for cls in _outage_classes():

        @app.exception_handler(cls)  # type: ignore[arg-type]
        async def _outage(request: Request, exc: Exception) -> JSONResponse:
            which = dependency_of(exc)
            log.warning("%s unavailable on %s %s: %s", which, request.method, request.url.path, exc)
            detail = (
                "the database is unavailable; the request changed nothing. Retry later."
                if which == "database"
                else "the broker is unavailable; retry later (stored work is published once it is back)"
            )
            return problem_response(problem(503, detail), {"Retry-After": str(OUTAGE_RETRY_AFTER_S)})
