"""Conditional GET for responses without a cheaper state fingerprint (status, report): the ETag is a
hash of the rendered body, so a poller that sends If-None-Match gets an empty 304 when nothing
changed (the work to build the body is still done; the transfer and the client's parsing are not)."""

from __future__ import annotations

import hashlib

from fastapi import Response
from pydantic import BaseModel

from app.services.ranking_cache import matches


def body_etag(body: bytes) -> str:
    return f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


def conditional(
    body: bytes, media_type: str, if_none_match: str | None, etag_source: bytes | None = None
) -> Response:
    """``etag_source``: what the ETag is computed from when the body holds a volatile part (the
    report's generated_at), default the body itself."""
    etag = body_etag(body if etag_source is None else etag_source)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def conditional_model(
    model: type[BaseModel], data: object, if_none_match: str | None, volatile: frozenset[str] = frozenset()
) -> Response:
    """``volatile``: top-level fields left out of the ETag."""
    rendered = model.model_validate(data)
    source = rendered.model_dump_json(exclude=set(volatile)).encode() if volatile else None
    return conditional(rendered.model_dump_json().encode(), "application/json", if_none_match, source)
