"""Dashboard pages. The server renders the frame of each page; the browser fills it from the public
JSON API (``/v1/...``), so the dashboard depends on the API contract only, not on service internals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.routing import Route

from app.settings import get_settings

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_URL = "/ui/static"
CANCEL_PATH = "/v1/batches/{batch_id}/cancel"

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ui", include_in_schema=False)


def _can_cancel(request: Request) -> bool:
    """The cancel button appears only once the service has a cancel endpoint."""
    return any(
        isinstance(r, Route) and r.path == CANCEL_PATH and "POST" in (r.methods or ())
        for r in request.app.routes
    )


def _page(request: Request, template: str, title: str, **context: object) -> HTMLResponse:
    # The ranking table reads every row in the largest pages this server allows (max_page_size).
    frame = {"title": title, "static": STATIC_URL, "page_size": get_settings().max_page_size}
    return templates.TemplateResponse(request, template, {**frame, **context})


@router.get("", response_class=HTMLResponse)
def batches_page(request: Request) -> HTMLResponse:
    return _page(request, "batches.html", "Batches")


@router.get("/", response_class=HTMLResponse)
def batches_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: str) -> HTMLResponse:
    return _page(
        request, "batch.html", f"Batch {batch_id}", batch_id=batch_id, can_cancel=_can_cancel(request)
    )


@router.get("/batches/{batch_id}/report", response_class=HTMLResponse)
def report_page(request: Request, batch_id: str) -> HTMLResponse:
    return _page(request, "report.html", f"Report of batch {batch_id}", batch_id=batch_id)


@router.get("/architectures/{key}", response_class=HTMLResponse)
def architecture_page(
    request: Request, key: str, space: Annotated[str, Query(max_length=16)] = "nb201"
) -> HTMLResponse:
    return _page(request, "architecture.html", f"Architecture {key}", key=key, space=space)
