"""RFC 9457 problem details for the errors this package raises (401, 403, 429).

The shape is the service-wide contract (`{"type","title","status","detail","code","errors"}`); the
global handler in app/errors.py may take these over, the body stays the same.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemError(Exception):
    """A client-facing error that already knows its status, code, title and headers."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(detail)


class Unauthorized(ProblemError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        # RFC 6750: a 401 names the scheme the client should use.
        super().__init__(detail, {"WWW-Authenticate": 'Bearer realm="fastarchrank"'})


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class RateLimited(ProblemError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(detail, {"Retry-After": str(retry_after_s)})


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, object]] | None = None,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": errors or [],
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE)


def problem_from(exc: ProblemError) -> JSONResponse:
    return problem_response(exc.status, exc.code, exc.title, exc.detail, exc.headers)
