"""Liveness of the parts: database, broker, workers, queue depth."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select, text

from app.api.deps import SessionDep, SettingsDep
from app.api.models import Health
from app.api.problems import OUTAGE_RETRY_AFTER_S
from app.models import QUEUED, RUNNING, Evaluation, WorkerSeen, utcnow
from app.services.fleet import merged_capabilities
from app.services.queue import broker_ok, queue_depths

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    summary="Database, broker, workers seen recently, queue depth",
    responses={503: {"model": Health, "description": "a dependency is down (named in `down`)"}},
)
def get_health(session: SessionDep, settings: SettingsDep, response: Response) -> Any:
    try:
        session.execute(text("SELECT 1"))
        db = {"ok": True, "dialect": session.get_bind().dialect.name}
    except Exception as exc:
        db = {"ok": False, "error": type(exc).__name__}
    b_ok, b_detail = broker_ok(settings)
    workers: list[dict[str, Any]] = []
    pending: dict[str, int | None] = {"queued": None, "running": None}
    if db["ok"]:
        cutoff = utcnow() - timedelta(seconds=settings.worker_seen_window_s)
        for w in session.scalars(select(WorkerSeen).where(WorkerSeen.last_seen >= cutoff)):
            caps = merged_capabilities(w.capabilities, w.info)
            workers.append(
                {
                    "name": w.name,
                    "device": w.device,
                    "queue": w.queue,
                    "last_seen": w.last_seen,
                    "capabilities": caps.model_dump(mode="json") if caps else None,
                }
            )
        for st in (QUEUED, RUNNING):
            pending[st] = session.query(Evaluation).filter(Evaluation.status == st).count()
    if not db["ok"]:
        session.rollback()
    down = [name for name, up in (("database", db["ok"]), ("broker", b_ok)) if not up]
    if down:
        response.status_code = 503
        response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER_S)
    depths = queue_depths(settings) if b_ok else None
    return {
        "status": "degraded" if down else "ok",
        "down": down,
        "database": db,
        "broker": {
            "ok": b_ok,
            "detail": b_detail,
            "queue_depth": None if depths is None else sum(depths.values()),
            "queue_depths": depths,
        },
        "workers": {
            "recent": len(workers),
            "items": workers,
            "window_s": settings.worker_seen_window_s,
            "by_device_class": by_device_class(workers, depths),
        },
        "evaluations": pending,
    }


def by_device_class(workers: list[dict[str, Any]], depths: dict[str, int] | None) -> dict[str, Any]:
    """Workers, slots, GPU models and consumed queues (with their depth) per device class."""
    fleet: dict[str, dict[str, Any]] = {}
    for w in workers:
        caps = w["capabilities"] or {}
        entry = fleet.setdefault(
            caps.get("device_class") or "unknown", {"workers": 0, "slots": 0, "gpus": [], "queues": {}}
        )
        entry["workers"] += 1
        entry["slots"] += 1  # one row per slot: each slot is its own worker node
        gpu = (caps.get("gpu") or {}).get("name")
        if gpu and gpu not in entry["gpus"]:
            entry["gpus"].append(gpu)
        for q in caps.get("queues") or []:
            entry["queues"][q] = None if depths is None else depths.get(q)
    return fleet
