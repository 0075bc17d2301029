"""The browser side of the service: the dashboard at ``/ui`` and offline API docs at ``/docs``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.ui import docs, pages


def install(app: FastAPI) -> None:
    """Add the dashboard and the docs to an app created with ``docs_url=None, redoc_url=None``."""
    app.mount(pages.STATIC_URL, StaticFiles(directory=pages.STATIC_DIR), name="ui-static")
    app.mount(docs.ASSETS_URL, StaticFiles(directory=docs.ASSETS_DIR), name="docs-static")
    app.include_router(pages.router)
    app.include_router(docs.router)
