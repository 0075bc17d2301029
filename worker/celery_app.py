"""The worker's Celery app, built from the same configuration as the API's producer
(``app.services.queue.celery_config``). Torch-free."""

from __future__ import annotations

from app.services.queue import TASK_EVALUATE, make_celery

__all__ = ["TASK_EVALUATE", "celery_app"]

celery_app = make_celery()
