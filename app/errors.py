"""Client errors in one shape: FastAPI's ``{"detail": [{"loc", "msg", "type"}]}``, so clients parse
validation failures from pydantic and from our own checks the same way."""

from __future__ import annotations

from collections.abc import Sequence


class InputError(Exception):
    """A request problem the client can fix; ``loc`` is the path of the offending field."""

    def __init__(self, loc: Sequence[str | int], msg: str, status_code: int = 422, kind: str = "value_error"):
        self.errors = [{"loc": list(loc), "msg": msg, "type": kind}]
        self.status_code = status_code
        super().__init__(msg)

    @classmethod
    def many(cls, errors: list[dict], status_code: int = 422) -> InputError:
        err = cls(errors[0]["loc"], errors[0]["msg"], status_code)
        err.errors = errors
        return err


class NotFound(Exception):
    def __init__(self, what: str):
        self.what = what
        super().__init__(what)


class Conflict(Exception):
    def __init__(self, msg: str):
        self.msg = msg
        super().__init__(msg)
