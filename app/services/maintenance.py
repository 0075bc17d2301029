"""Reaper and sweeper: no evaluation is lost or stranded when a process, the broker or the database
dies. Both run in every worker's maintenance thread and are idempotent; the transitions themselves
are in ``app.lifecycle``. Torch-free.

- reaper: a ``running`` evaluation whose attempt has no live worker goes back to ``queued`` (attempts
  left) or ends ``lost``. "No live worker" is: no heartbeat for ``stale_after_s``, or the owning
  worker's beacon is older than ``worker_dead_after_s``, or (same worker node) its process is gone.
  Re-queued evaluations are published at once.
- sweeper: publishes queued evaluations that no message will deliver: never published, or published
  more than ``publish_lease_s`` ago and still not claimed (the message was lost), whatever the depth
  of the broker queue. A failed publish releases its lease.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.db import session_scope
from app.lifecycle import Leased, lease_for_publish, release_lease, running_owners
from app.lifecycle import reap as reap_transition
from app.models import WorkerSeen, utcnow
from app.services.queue import publish
from app.services.submission import group_payloads
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)


def owner_label(node: str, pid: int) -> str:
    """What a claim records as the attempt's owner: the worker node (its beacon name) and the pid of
    the process running the attempt."""
    return f"{node}/{pid}"


def _parse_owner(label: str) -> tuple[str, int | None]:
    node, sep, pid = label.rpartition("/")
    if not sep or not pid.isdigit():
        return label, None  # written before owners carried a pid
    return node, int(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def dead_owners(
    owners: Collection[str],
    beacons: dict[str, datetime],
    now: datetime,
    settings: Settings,
    this_node: str | None,
) -> set[str]:
    """Owners whose worker is gone: a beacon older than ``worker_dead_after_s`` (a node without a
    beacon row is left to the heartbeat rule), or, for this very node, a process that no longer
    exists (a pool child killed while its parent lives on)."""
    cutoff = now - timedelta(seconds=settings.worker_dead_after_s)
    dead: set[str] = set()
    for label in owners:
        node, pid = _parse_owner(label)
        seen = beacons.get(node)
        if (seen is not None and seen < cutoff) or (
            this_node is not None and node == this_node and pid is not None and not _pid_alive(pid)
        ):
            dead.add(label)
    return dead


@dataclass
class ReapReport:
    requeued: int
    lost: int
    published: int


def reap(
    settings: Settings | None = None, *, this_node: str | None = None, check_owners: bool = True
) -> dict[str, int]:
    """``check_owners`` is False right after this process regained the database: every beacon is old
    then, and only the heartbeat rule (whose writers have had time to resume) applies."""
    settings = settings or get_settings()
    now = utcnow()
    with session_scope() as session:
        dead: set[str] = set()
        if check_owners:
            owners = running_owners(session)
            if owners:
                beacons = {n: t for n, t in session.execute(select(WorkerSeen.name, WorkerSeen.last_seen))}
                dead = dead_owners(owners, beacons, now, settings, this_node)
        reaped = reap_transition(session, settings, now, dead)
    if reaped.requeued or reaped.lost:
        log.warning(
            "reaper: %d evaluations re-queued, %d marked lost (dead workers: %s)",
            len(reaped.requeued),
            len(reaped.lost),
            sorted(dead) or "none; stale heartbeats",
        )
    published = sweep(settings, ids=reaped.requeued) if reaped.requeued else 0
    return {"requeued": len(reaped.requeued), "lost": len(reaped.lost), "published": published}


def sweep(settings: Settings | None = None, limit: int = 1000, ids: Collection[int] = ()) -> int:
    """Publish queued evaluations that no message will deliver. Returns tasks sent."""
    settings = settings or get_settings()
    now = utcnow()
    with session_scope() as session:
        leased = lease_for_publish(session, settings, limit, now, ids)
    if not leased:
        return 0
    payloads = _payloads(leased)
    log.warning("sweeper: publishing %d queued evaluations", len(leased))
    out = publish(payloads)
    if out.failed_ids:
        with session_scope() as session:
            release_lease(session, out.failed_ids, now)
    return out.tasks


def _payloads(leased: list[Leased]) -> list[list[int]]:
    from app.catalog.methods import all_methods

    methods = all_methods()
    family = {
        x.evaluation_id: methods[x.method].family if x.method in methods else "training" for x in leased
    }
    arch = {x.evaluation_id: x.architecture_id for x in leased}
    return group_payloads([x.evaluation_id for x in leased], family.__getitem__, arch.__getitem__)
