"""Errors a client can act on, and the one body every 4xx/5xx carries: RFC 9457 problem details
(``application/problem+json``) with a machine-readable ``code`` and, for validation failures, the
field list ``errors[]`` (``loc`` = path of the offending field, ``msg`` = what to change)."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"

# status → machine-readable code (the agreed contract; clients switch on these, not on text)
CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="path of the offending field, e.g. ['body', 'items', 0]")
    msg: str = Field(description="what is wrong and what to change")
    type: str = Field(description="machine-readable kind of the error")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field("about:blank", description="problem type URI; about:blank = see status/title")
    title: str = Field(description="short summary of the status")
    status: int = Field(description="HTTP status code")
    detail: str = Field(description="what went wrong in this request and how to fix it")
    code: str = Field(description="machine-readable code: validation_error, not_found, conflict, ...")
    errors: list[FieldError] = Field(default_factory=list, description="field list (validation errors)")


def code_for(status: int) -> str:
    return CODES.get(status, "bad_request" if status < 500 else "internal_error")


def problem(status: int, detail: str, errors: Sequence[FieldError] = (), code: str | None = None) -> Problem:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return Problem(
        type="about:blank",
        title=title,
        status=status,
        detail=detail,
        code=code or code_for(status),
        errors=list(errors),
    )


class ApiError(Exception):
    """Base of the errors the handlers turn into problem details."""

    status_code = 400

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        self.detail = detail
        self.headers = headers or {}
        super().__init__(detail)

    def errors_list(self) -> list[FieldError]:
        return []


class InputError(ApiError):
    """A request problem the client can fix; ``loc`` is the path of the offending field."""

    def __init__(
        self, loc: Sequence[str | int], msg: str, status_code: int = 422, kind: str = "value_error"
    ) -> None:
        self.errors = [{"loc": list(loc), "msg": msg, "type": kind}]
        self.status_code = status_code
        super().__init__(msg)

    @classmethod
    def many(cls, errors: list[dict[str, Any]], status_code: int = 422) -> InputError:
        err = cls(errors[0]["loc"], errors[0]["msg"], status_code)
        err.errors = errors
        if len(errors) > 1:
            err.detail = f"{len(errors)} fields are invalid; see errors[]"
        return err

    def errors_list(self) -> list[FieldError]:
        return [FieldError(loc=list(e["loc"]), msg=str(e["msg"]), type=str(e["type"])) for e in self.errors]

    def in_body(self) -> InputError:
        """The same errors with ``query`` locations moved to ``body``: for an operation that takes
        in its body the fields another takes in its query (``createReport`` vs ``getReport``)."""
        renamed = {"method": "methods"}  # getReport's repeated ?method= is createReport's methods[]
        for e in self.errors:
            if e["loc"][:1] == ["query"]:
                e["loc"] = ["body", *(renamed.get(str(part), part) for part in e["loc"][1:])]
        return self


class NotFound(ApiError):
    status_code = 404

    def __init__(self, what: str, why: str = "") -> None:
        self.what = what
        # "<what> not found", then why and how to find it: the reason never splits the sentence.
        super().__init__(f"{what} not found{': ' + why if why else ''}")


class Conflict(ApiError):
    status_code = 409

    def __init__(self, msg: str) -> None:
        self.msg = msg
        super().__init__(msg)


class ServiceUnavailable(ApiError):
    status_code = 503

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})
