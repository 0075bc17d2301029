"""One exception type for everything the service answers with an error (and for an unreachable one).

The service speaks RFC 9457 problem details (``application/problem+json``); older servers answer
FastAPI's ``{"detail": [...]}`` (validation) or ``{"detail": "..."}``. Both become the same object so a
caller writes one ``except`` and reads ``status``, ``code`` and the field list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

# What the problem-details contract calls each status, for servers that send no ``code`` yet.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


@dataclass(frozen=True)
class FieldError:
    """One invalid field: where (``loc``, e.g. ``("body", "items", 0, "genotype")``), what, and kind."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = ""

    @property
    def field(self) -> str:
        return ".".join(str(p) for p in self.loc)


@dataclass(eq=False)
class FastArchRankError(Exception):
    """An error answer of the service (``status`` set) or no answer at all (``status`` None,
    ``code`` ``"unreachable"``)."""

    status: int | None
    code: str
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    type: str = "about:blank"
    method: str = ""
    url: str = ""
    body: Any = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.status} {self.code}" if self.status is not None else self.code
        where = f" ({self.method} {self.url})" if self.method else ""
        fields = "; ".join(f"{e.field}: {e.msg}" for e in self.errors)
        text = self.detail or self.title
        return f"{head}{where}: {text}" + (f" [{fields}]" if fields and fields not in text else "")

    @property
    def fields(self) -> list[str]:
        """Dotted names of the invalid fields (empty unless a validation error)."""
        return [e.field for e in self.errors]


class WaitTimeout(FastArchRankError, TimeoutError):
    """``Batch.wait(timeout=...)`` ran out before the batch finished."""


def _field_errors(raw: Any) -> list[FieldError]:
    out: list[FieldError] = []
    if not isinstance(raw, list):
        return out
    for entry in raw:
        if isinstance(entry, dict):
            loc = entry.get("loc") or ()
            out.append(
                FieldError(
                    loc=tuple(p if isinstance(p, int) else str(p) for p in loc),
                    msg=str(entry.get("msg", "")),
                    type=str(entry.get("type", "")),
                )
            )
    return out


def from_response(resp: httpx.Response) -> FastArchRankError:
    """The error of an HTTP answer with status >= 400, whichever error shape the server used."""
    status = resp.status_code
    method, url = resp.request.method, str(resp.request.url)
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    default_code = _CODES.get(status, "server_error" if status >= 500 else "client_error")
    title = resp.reason_phrase or default_code
    if isinstance(body, dict) and ("title" in body or "code" in body or "errors" in body):
        errors = _field_errors(body.get("errors"))
        return FastArchRankError(
            status=int(body.get("status") or status),
            code=str(body.get("code") or default_code),
            title=str(body.get("title") or title),
            detail=str(body.get("detail") or ""),
            errors=errors,
            type=str(body.get("type") or "about:blank"),
            method=method,
            url=url,
            body=body,
        )
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):
            errors = _field_errors(detail)
            text = "; ".join(f"{e.field}: {e.msg}" for e in errors)
            return FastArchRankError(
                status, default_code, title, text, errors, method=method, url=url, body=body
            )
        return FastArchRankError(status, default_code, title, str(detail), method=method, url=url, body=body)
    text = body if isinstance(body, str) else repr(body)
    return FastArchRankError(status, default_code, title, text[:2000], method=method, url=url, body=body)


def unreachable(method: str, url: str, exc: Exception) -> FastArchRankError:
    return FastArchRankError(
        status=None,
        code="unreachable",
        title="service unreachable",
        detail=f"{type(exc).__name__}: {exc}",
        method=method,
        url=url,
    )
