"""Celery configuration. Every setting says why; unsafe combinations refuse to start.

Imported by the API too (to enqueue), so it must not import torch.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.settings import Settings, get_settings

TASK_EVALUATE = "fastarchrank.evaluate"


def celery_config(settings: Settings) -> dict[str, Any]:
    if settings.broker_visibility_timeout_s < settings.task_hard_time_limit_s:
        # A message not acked within the visibility timeout is redelivered while its first
        # delivery still runs; the claim would stop the duplicate, but the limit must be honest.
        raise RuntimeError("broker_visibility_timeout_s must be >= task_hard_time_limit_s")
    conf: dict[str, Any] = {
        "broker_url": settings.effective_broker_url,
        # Results live in the database; a result backend would only duplicate them.
        "result_backend": None,
        "task_ignore_result": True,
        # Untrusted pickles from the broker could execute code; JSON is all we send.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Ack after the task ran: a worker killed mid-evaluation leaves its message to be redelivered.
        "task_acks_late": True,
        # A message whose worker process died is re-queued instead of being acked as failed.
        "task_reject_on_worker_lost": True,
        # Evaluations run for minutes to hours: never hoard messages another worker could run.
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_hard_time_limit_s,
        # If the broker connection drops, a late-ack task would be redelivered elsewhere anyway.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_default_queue": settings.queue,
        "task_routes": {TASK_EVALUATE: {"queue": settings.queue}},
        "broker_connection_retry_on_startup": True,
        # Keep the worker's own logging; the service logs through the root logger.
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }
    if settings.embedded_broker:
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        # The filesystem transport needs no server: producer and consumer share one folder.
        conf["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            # Broadcast (remote-control) messages would otherwise land in ./control of the cwd.
            "control_folder": str(folder / "control"),
            # The filesystem transport polls; its 1 s default would add up to a second per task.
            "polling_interval": settings.broker_polling_interval_s,
        }
    else:
        conf["broker_transport_options"] = {"visibility_timeout": settings.broker_visibility_timeout_s}
    return conf


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("fastarchrank")
    app.conf.update(celery_config(settings))
    return app


celery_app = make_celery()
