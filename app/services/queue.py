"""Enqueueing evaluations (after commit) and reading the broker's queue depth. Torch-free."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import update

from app.db import session_scope
from app.models import Evaluation, utcnow
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)


def enqueue(payloads: Iterable[list[int]]) -> int:
    """Publish one task per payload and mark the evaluations as enqueued. Returns tasks sent.

    Failures are logged, not raised: the batch is committed already and the sweeper re-enqueues
    evaluations that were never published."""
    from worker.celery_app import TASK_EVALUATE, celery_app

    sent: list[int] = []
    n = 0
    try:
        with celery_app.producer_or_acquire() as producer:
            for ids in payloads:
                celery_app.send_task(TASK_EVALUATE, args=[ids], producer=producer)
                sent.extend(ids)
                n += 1
    except Exception:  # broker down: the sweeper will retry; the client already has its batch id
        log.exception("enqueue failed after %d tasks; the sweeper will re-enqueue the rest", n)
    if sent:
        mark_enqueued(sent)
    return n


def mark_enqueued(ids: list[int]) -> None:
    now = utcnow()
    with session_scope() as session:
        for i in range(0, len(ids), 500):
            session.execute(
                update(Evaluation).where(Evaluation.id.in_(ids[i : i + 500])).values(enqueued_at=now)
            )


def queue_depth(settings: Settings | None = None) -> int | None:
    """Messages waiting in the broker queue (None if the broker cannot be asked)."""
    settings = settings or get_settings()
    try:
        if settings.embedded_broker:
            folder = settings.broker_dir / "queue"
            return sum(1 for p in folder.iterdir() if p.suffix == ".msg") if folder.exists() else 0
        import redis

        client = redis.Redis.from_url(settings.effective_broker_url, socket_timeout=2)
        try:
            return int(client.llen(settings.queue))  # type: ignore[arg-type]
        finally:
            client.close()
    except Exception:
        log.warning("cannot read the broker queue depth", exc_info=True)
        return None


def broker_ok(settings: Settings | None = None) -> tuple[bool, str]:
    settings = settings or get_settings()
    if settings.embedded_broker:
        folder = settings.broker_dir / "queue"
        return folder.exists(), f"filesystem broker at {settings.broker_dir}"
    try:
        import redis

        client = redis.Redis.from_url(settings.effective_broker_url, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return True, "redis"
    except Exception as exc:
        return False, f"redis unreachable: {type(exc).__name__}"
