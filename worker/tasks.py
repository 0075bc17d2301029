"""Celery tasks and worker lifecycle hooks. Start a worker with ``fastarchrank worker``."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from celery.exceptions import Reject
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown
from sqlalchemy import update

from app.catalog.datasets import adopt_legacy_cache
from app.db import is_unavailable, session_scope
from app.models import WorkerSeen, utcnow
from app.services.funnel import advance_waiting
from app.services.maintenance import reap, sweep
from app.services.sql import insert_ignore
from app.settings import get_settings
from worker.celery_app import TASK_EVALUATE, celery_app
from worker.runtime import claim, worker_name

log = logging.getLogger(__name__)
_stop = threading.Event()


@celery_app.task(name=TASK_EVALUATE, bind=True)
def evaluate(self: Any, evaluation_ids: list[int]) -> None:
    """Claim → run → store. Never raises for a method error (it is stored as ``failed``)."""
    from worker.engine import device_label, run_claims, worker_device
    from worker.stacking import co_claim

    if not isinstance(evaluation_ids, list) or not all(isinstance(i, int) for i in evaluation_ids):
        log.error("malformed task payload %r dropped", evaluation_ids)
        return
    label = device_label(worker_device())
    try:
        claims = claim(evaluation_ids, label)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        # The database stayed away through every retry: put the message back instead of acking
        # it, so the evaluations are not left queued without a message.
        raise Reject(f"database unavailable at claim: {type(exc).__name__}", requeue=True) from exc
    try:
        # Queued evaluations that can train in one stack with these (settings.stack_size > 1).
        claims += co_claim(claims, get_settings().stack_size, label)
    except Exception:  # companions are an optimisation: the claimed evaluations run regardless
        log.warning("could not claim stack companions for %s", evaluation_ids, exc_info=True)
    if claims:
        run_claims(claims)


def _consumed_queues() -> list[str]:
    try:
        return sorted(celery_app.amqp.queues.consume_from or {})
    except Exception:  # not started from `celery worker`: nothing consumed
        return []


def capabilities() -> dict[str, Any]:
    """What this node can run, as ``app.services.fleet.Capabilities``. Computed in the main process,
    which must not initialise CUDA: the GPU's name and memory come from the pool child
    (``workers.info.device_facts``, written by ``_on_child_start``)."""
    from importlib.metadata import PackageNotFoundError, version

    from app.catalog.datasets import DATASETS, availability
    from app.services.fleet import Capabilities

    settings = get_settings()
    wanted = settings.device.strip().lower()
    device_class = os.environ.get("FASTARCHRANK_WORKER_DEVICE_CLASS") or (
        "gpu" if wanted.startswith("cuda") else "cpu" if wanted == "cpu" else "unknown"
    )
    try:
        torch_version: str | None = version("torch")
    except PackageNotFoundError:
        torch_version = None
    datasets = [n for n in sorted(DATASETS) if availability(n, settings.effective_datasets_dir)["present"]]
    return Capabilities(
        device_class=device_class,
        device=settings.device,
        torch=torch_version,
        slot=int(os.environ["FASTARCHRANK_SLOT"]) if os.environ.get("FASTARCHRANK_SLOT") else None,
        slots=int(os.environ.get("FASTARCHRANK_SLOTS") or 1),
        queues=_consumed_queues(),
        datasets=datasets,
    ).model_dump(mode="json")


def _announce(device: str) -> None:
    settings = get_settings()
    now = utcnow()
    caps = capabilities()
    with session_scope() as session:
        table = WorkerSeen.__table__
        session.execute(
            insert_ignore(session, table, ["name"]),  # type: ignore[arg-type]
            [
                {
                    "name": worker_name(),
                    "device": device,
                    "queue": settings.queue,
                    "started_at": now,
                    "last_seen": now,
                    "info": {"pid": os.getpid()},
                    "capabilities": caps,
                }
            ],
        )
        session.execute(
            update(WorkerSeen)
            .where(WorkerSeen.name == worker_name())
            .values(last_seen=now, device=device, capabilities=caps)
        )


def _record_device_facts() -> None:
    """The pool child's view of its device (it is the process that uses it): resolved device class,
    GPU name and memory, torch's CUDA version, into ``workers.info.device_facts`` of this node."""
    from worker.engine import device_facts

    facts = device_facts()
    now = utcnow()
    with session_scope() as session:
        session.execute(
            insert_ignore(session, WorkerSeen.__table__, ["name"]),  # type: ignore[arg-type]
            [
                {
                    "name": worker_name(),
                    "queue": get_settings().queue,
                    "started_at": now,
                    "last_seen": now,
                    "info": {},
                }
            ],
        )
        session.execute(
            update(WorkerSeen)
            .where(WorkerSeen.name == worker_name())
            .values(info={"pid": os.getppid(), "device_facts": facts})
        )


class _DatabaseHealth:
    """Since when this process has reached the database without a failure (monotonic seconds)."""

    def __init__(self) -> None:
        self.up_since: float | None = None

    def ok(self) -> None:
        if self.up_since is None:
            self.up_since = time.monotonic()

    def failed(self) -> None:
        self.up_since = None

    def up_for(self) -> float:
        return 0.0 if self.up_since is None else time.monotonic() - self.up_since


_health = _DatabaseHealth()


def _beacon_loop(device: str) -> None:
    """Presence beacon every ``worker_beacon_interval_s``: other workers' reapers treat a node whose
    beacon stopped as dead. Its own thread, so a long reaper round cannot make it look dead."""
    settings = get_settings()
    while not _stop.is_set():
        try:
            _announce(device)
            _health.ok()
        except Exception:
            _health.failed()
            log.warning("worker beacon failed", exc_info=True)
        _stop.wait(settings.worker_beacon_interval_s)


class _RoundClock:
    """Tells a maintenance round that this process itself was suspended (SIGSTOP, a paused VM or
    container) since the last round: its wait overran by more than a beacon's life. Every other
    worker's beacon then looks old to it, though they only could not be seen; judging them dead at
    once re-queued their running evaluations after every pause."""

    def __init__(self, interval_s: float, dead_after_s: float) -> None:
        self.limit_s = interval_s + dead_after_s
        self.last = time.monotonic()

    def woke_from_suspension(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        gap, self.last = now - self.last, now
        return gap > self.limit_s


def _maintenance_loop() -> None:
    """Reaper + sweeper every ``sweep_interval_s``."""
    settings = get_settings()
    clock = _RoundClock(settings.sweep_interval_s, settings.worker_dead_after_s)
    while not _stop.is_set():
        if clock.woke_from_suspension():
            log.warning("this worker was suspended; judging no worker dead until beacons resume")
            _health.failed()  # up_for() restarts at the beacon's next write, as after an outage
        # Right after a database outage every beacon and heartbeat is old: wait until the live
        # workers have had time to write theirs again before judging anyone dead.
        if _health.up_for() >= settings.worker_dead_after_s:
            try:
                reap(settings, this_node=worker_name())
                sweep(settings)
                advance_waiting()  # funnels whose cheap stage a lost/reaped evaluation ended
            except Exception:  # the database may be briefly away; try again next round
                _health.failed()
                log.warning("maintenance round failed", exc_info=True)
        _stop.wait(settings.sweep_interval_s)


@worker_init.connect
def _on_init(**_: Any) -> None:
    # Before the pool forks: every child inherits the node name its claims are recorded under.
    os.environ.setdefault("FASTARCHRANK_WORKER_NAME", f"{socket.gethostname()}:{os.getpid()}")
    settings = get_settings()
    try:
        note = adopt_legacy_cache(settings.effective_datasets_dir, settings.cache_dir)
    except OSError:  # advisory: the caches are rebuilt if they cannot be found
        note = None
    if note:
        log.warning(note)


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    # The parent process must not initialise CUDA (its children are forked from it): describe the
    # configured device here; each result records the device its child process really used.
    device = get_settings().device
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        device += f" (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']})"
    log.info("fastarchrank worker %s ready on %s", worker_name(), device)
    threading.Thread(target=_beacon_loop, args=(device,), name="fastarchrank-beacon", daemon=True).start()
    threading.Thread(target=_maintenance_loop, name="fastarchrank-maintenance", daemon=True).start()


@worker_process_init.connect
def _on_child_start(**_: Any) -> None:
    # A forked child must not reuse the parent's database connections (SQLite locks and
    # Postgres sockets are per process): drop the inherited pool without closing the parent's.
    from app.db import get_engine

    get_engine().dispose(close=False)
    try:
        _record_device_facts()
    except Exception:  # advisory: the beacon still advertises the rest
        log.warning("could not record this worker's device facts", exc_info=True)


@worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    _stop.set()
