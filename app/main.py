"""FastAPI app factory. Never imports torch: the API starts fast and stays small."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import architectures, batches, catalog, health, reports
from app.api.listing import router as listing_router
from app.errors import Conflict, InputError, NotFound
from app.services.ranking_cache import RankingCache
from app.settings import get_settings
from app.ui import install as install_ui

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Reject request bodies over the limit with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        too_big = False

        async def limited_receive() -> Message:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_big = True
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = (
            b'{"detail":[{"loc":["body"],"msg":"request body exceeds '
            + str(self.max_bytes).encode()
            + b' bytes; split the items into several batches","type":"too_large"}]}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _clean(errors: list[dict]) -> list[dict]:
    """Pydantic errors carry the offending input and a docs URL; keep what a client needs."""
    out = []
    for e in errors:
        item = {
            "loc": list(e.get("loc", [])),
            "msg": str(e.get("msg", "")),
            "type": e.get("type", "value_error"),
        }
        if "ctx" in e and isinstance(e["ctx"], dict):
            item["ctx"] = {
                k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in e["ctx"].items()
            }
        out.append(item)
    return out


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="FastArchRank",
        docs_url=None,  # /docs and /redoc come from app.ui with local assets
        redoc_url=None,
        version="1.0",
        summary="Rank neural architectures with FEAR, training baselines and zero-cost proxies.",
        description=(
            "Post a batch of genotypes (NAS-Bench-201, NATS-Bench size space, DARTS, NAS-Bench-301), poll "
            "its status, read rankings, correlation reports against ground truth, plots and exports. "
            f"Limits: {settings.max_items_per_batch} items per batch, {settings.max_request_bytes} request "
            f"bytes, {settings.max_genotype_chars} characters per genotype."
        ),
    )

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": exc.errors}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean(list(exc.errors()))}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": f"{exc.what} not found"}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": exc.msg}, status_code=409)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Log the trace for operators; the client gets no internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": "internal error; the request changed nothing. It was logged."}, status_code=500
        )

    for module in (batches, reports, architectures, catalog, health):
        app.include_router(module.router, prefix="/v1")
    app.include_router(listing_router, prefix="/v1")
    install_ui(app)
    app.state.ranking_cache = RankingCache(settings.ranking_cache_rows)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
