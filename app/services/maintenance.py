"""Sweeper and reaper: no evaluation is lost when a process dies.

- reaper: a ``running`` evaluation whose heartbeat is older than ``stale_after_s`` belonged to a dead
  worker. It goes back to ``queued`` while attempts < max_attempts, else it ends ``lost`` (kept
  distinct from ``failed``, which means the method itself raised).
- sweeper: a ``queued`` evaluation that was never published (crash between commit and enqueue),
  or whose message vanished (the broker queue is empty but the evaluation still waits), is
  published again. A conditional update on ``enqueued_at`` acts as a lease, so two sweepers
  running at once publish each evaluation once.

Both run in every worker (a background thread) and are idempotent. Torch-free.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from app.db import session_scope
from app.models import LOST, QUEUED, RUNNING, Evaluation, utcnow
from app.services.queue import enqueue, queue_depth
from app.services.submission import group_payloads
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)


def reap(settings: Settings | None = None) -> dict[str, int]:
    settings = settings or get_settings()
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.stale_after_s)
    stale = or_(Evaluation.heartbeat_at.is_(None), Evaluation.heartbeat_at < cutoff)
    with session_scope() as session:
        requeued = session.execute(
            update(Evaluation)
            .where(Evaluation.status == RUNNING, stale, Evaluation.attempts < settings.max_attempts)
            .values(status=QUEUED, queued_at=now, enqueued_at=None, worker=None, progress={})
        ).rowcount
        lost = session.execute(
            update(Evaluation)
            .where(Evaluation.status == RUNNING, stale, Evaluation.attempts >= settings.max_attempts)
            .values(
                status=LOST,
                finished_at=now,
                error=f"worker stopped responding {settings.max_attempts} times (no heartbeat for "
                f"{settings.stale_after_s:.0f} s); resubmit to try again",
            )
        ).rowcount
    if requeued or lost:
        log.warning("reaper: %d stale evaluations re-queued, %d marked lost", requeued, lost)
    return {"requeued": requeued or 0, "lost": lost or 0}


def sweep(settings: Settings | None = None, limit: int = 1000) -> int:
    """Publish queued evaluations that no message will deliver. Returns tasks sent."""
    settings = settings or get_settings()
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.requeue_after_s)
    never_published = and_(Evaluation.enqueued_at.is_(None), Evaluation.queued_at < cutoff)
    conditions = [never_published]
    if queue_depth(settings) == 0:
        conditions.append(Evaluation.enqueued_at < cutoff)
    with session_scope() as session:
        candidates = session.execute(
            select(Evaluation.id, Evaluation.method, Evaluation.architecture_id, Evaluation.enqueued_at)
            .where(Evaluation.status == QUEUED, or_(*conditions))
            .order_by(Evaluation.id)
            .limit(limit)
        ).all()
        leased: list[tuple[int, str, int]] = []
        for eid, method, arch, enq in candidates:
            # Lease: only the sweeper whose update matches the value it read publishes.
            won = session.execute(
                update(Evaluation)
                .where(
                    Evaluation.id == eid,
                    Evaluation.status == QUEUED,
                    Evaluation.enqueued_at.is_(None) if enq is None else Evaluation.enqueued_at == enq,
                )
                .values(enqueued_at=now)
            ).rowcount
            if won:
                leased.append((eid, method, arch))
    if not leased:
        return 0
    from app.catalog.methods import all_methods

    methods = all_methods()
    family = {eid: methods[m].family if m in methods else "training" for eid, m, _ in leased}
    arch = {eid: a for eid, _, a in leased}
    payloads = group_payloads([e for e, _, _ in leased], family.__getitem__, arch.__getitem__)
    log.warning("sweeper: re-publishing %d queued evaluations", len(leased))
    return enqueue(payloads)
