"""The broker side of the service: the one Celery configuration (the worker builds its app from the
same function), publishing evaluations by task name, and the broker's queue depth. Torch-free, and it
does not import ``worker/``: the API only needs a producer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from celery import Celery
from sqlalchemy import func, select

from app.db import session_scope
from app.lifecycle import mark_published
from app.models import BatchEvaluation, Evaluation
from app.services.fleet import DEVICE_CLASSES, queue_name
from app.services.sql import MAX_PARAMS, chunks
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

TASK_EVALUATE = "fastarchrank.evaluate"

# Redis transport priorities (docs/lifecycle.md "Fair queues"): kombu keeps one list per step and
# a consumer pops the lists in ascending order, so 0 is served first and 9 last.
PRIORITY_STEPS = list(range(10))
BEST_PRIORITY, WORST_PRIORITY = PRIORITY_STEPS[0], PRIORITY_STEPS[-1]
# kombu's default separator between a queue name and its priority step (``<queue>\x06\x16<step>``);
# kept as is: queue names may contain ':' and the worker strips the suffix at the last separator.
PRIORITY_SEP = "\x06\x16"


def size_priority(evaluations: int, base: int) -> int:
    """The priority step of a batch of ``evaluations``: 0 below ``base**2`` evaluations (small
    batches share the best step), then one step worse each time the size grows ``base``-fold
    (log-scaled: at base 4, 10 evaluations → 0, 60 → 1, 20,000 → 6)."""
    step, bound = BEST_PRIORITY, base * base
    while evaluations >= bound and step < WORST_PRIORITY:
        step += 1
        bound *= base
    return step


def priority_keys(queue: str) -> list[str]:
    """The Redis lists that hold one routed queue's messages, best priority first."""
    return [queue] + [f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS[1:]]


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the API's producer and the worker. Every setting says why."""
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
        # Every evaluation is published to the queue of its routed device class (app/services/fleet.py);
        # the default only catches a send without one.
        "task_default_queue": queue_name(settings, "any"),
        "task_routes": {TASK_EVALUATE: {"queue": queue_name(settings, "any")}},
        "broker_connection_retry_on_startup": True,
        # A request must not hang on a broker that is down: fail fast, the sweeper publishes later.
        "broker_connection_timeout": 2.0,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        # Keep the worker's own logging; the service logs through the root logger.
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }
    if settings.embedded_broker:
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        # The filesystem transport needs no server: producer and consumer share one folder. Our
        # subclass writes each message file whole (see app/services/fs_broker.py).
        conf["broker_transport"] = "app.services.fs_broker:Transport"
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
        conf["broker_transport_options"] = {
            "visibility_timeout": settings.broker_visibility_timeout_s,
            # One list per step; a message without a priority goes to step 0 (served first). The
            # order across a worker's queues (gpu/cpu/any) stays round robin within a step.
            "priority_steps": PRIORITY_STEPS,
            "sep": PRIORITY_SEP,
        }
    return conf


def make_celery(settings: Settings | None = None) -> Celery:
    app = Celery("fastarchrank")
    app.conf.update(celery_config(settings or get_settings()))
    return app


@lru_cache
def producer_app() -> Celery:
    """The API's Celery app: same configuration as the worker's, no task code."""
    return make_celery()


@dataclass
class Published:
    tasks: int = 0
    evaluation_ids: list[int] = field(default_factory=list)
    failed_ids: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed_ids


@dataclass(frozen=True)
class Route:
    """Where one evaluation's message goes and how soon it is served."""

    device_class: str | None
    priority: int


def _batch_sizes(session: Any, ids: list[int]) -> dict[int, int]:
    """Evaluation id → evaluations in the smallest batch it belongs to (two set-based reads: the
    links of these evaluations, then one count per batch they touch)."""
    batches_of: dict[int, set[str]] = {}
    for part in chunks(ids, MAX_PARAMS):
        rows = session.execute(
            select(BatchEvaluation.evaluation_id, BatchEvaluation.batch_id).where(
                BatchEvaluation.evaluation_id.in_(list(part))
            )
        )
        for eid, batch_id in rows:
            batches_of.setdefault(eid, set()).add(batch_id)
    sizes: dict[str, int] = {}
    for part_b in chunks(sorted({b for bs in batches_of.values() for b in bs}), MAX_PARAMS):
        rows = session.execute(
            select(BatchEvaluation.batch_id, func.count())
            .where(BatchEvaluation.batch_id.in_(list(part_b)))
            .group_by(BatchEvaluation.batch_id)
        )
        sizes.update((batch_id, int(n)) for batch_id, n in rows)
    return {eid: min(sizes.get(b, 1) for b in bs) for eid, bs in batches_of.items()}


def _routes(ids: list[int]) -> dict[int, Route]:
    """The stored device class of each evaluation (the routing decision made at submission) and its
    priority, derived from stored rows only, so a re-publish gets what the first publish got."""
    settings = get_settings()
    wanted = sorted(set(ids))
    classes: dict[int, str | None] = {}
    with session_scope() as session:
        for part in chunks(wanted, MAX_PARAMS):
            rows = session.execute(
                select(Evaluation.id, Evaluation.device_class).where(Evaluation.id.in_(list(part)))
            )
            classes.update((eid, cls) for eid, cls in rows)
        sizes = _batch_sizes(session, wanted) if settings.fair_priorities else {}
    base = settings.fair_priority_base
    return {
        eid: Route(cls, size_priority(sizes[eid], base) if eid in sizes else BEST_PRIORITY)
        for eid, cls in classes.items()
    }


@dataclass(frozen=True)
class Task:
    queue: str
    priority: int
    ids: list[int]


def routed(payloads: Iterable[list[int]]) -> list[Task]:
    """One task per payload and (queue, priority): a payload whose evaluations differ (the sweeper
    groups across batches) is split so each part goes to its own queue at its own priority."""
    settings = get_settings()
    todo = [list(p) for p in payloads]
    routes = _routes([eid for ids in todo for eid in ids])
    unknown = Route(None, BEST_PRIORITY)
    out: list[Task] = []
    for ids in todo:
        parts: dict[Route, list[int]] = {}
        for eid in ids:
            parts.setdefault(routes.get(eid, unknown), []).append(eid)
        out.extend(Task(queue_name(settings, r.device_class), r.priority, part) for r, part in parts.items())
    return out


def publish(payloads: Iterable[list[int]]) -> Published:
    """Send one task per payload to the queue its evaluations were routed to. Never raises: a
    payload not sent is reported in ``failed_ids`` (the broker or the database is down); its
    evaluations stay queued for the sweeper."""
    out = Published()
    todo = [list(p) for p in payloads]
    try:
        tasks = routed(todo)
    except Exception:
        log.exception("cannot read the routes of %d tasks; the sweeper will publish them", len(todo))
        out.failed_ids = [eid for ids in todo for eid in ids]
        return out
    app = producer_app()
    try:
        with app.producer_or_acquire() as producer:
            for task in tasks:
                app.send_task(
                    TASK_EVALUATE,
                    args=[task.ids],
                    producer=producer,
                    queue=task.queue,
                    priority=task.priority,
                )
                out.evaluation_ids.extend(task.ids)
                out.tasks += 1
    except Exception:  # broker down: the client already has its batch id
        log.exception(
            "publishing failed after %d of %d tasks; the sweeper will publish the rest", out.tasks, len(tasks)
        )
        out.failed_ids = [eid for task in tasks[out.tasks :] for eid in task.ids]
    return out


def enqueue(payloads: Iterable[list[int]]) -> Published:
    """Publish after the submission committed and record which evaluations have a message."""
    out = publish(payloads)
    if out.evaluation_ids:
        try:
            with session_scope() as session:
                mark_published(session, out.evaluation_ids)
        except Exception:  # they stay "never published": the sweeper sends a harmless duplicate
            log.warning("could not record %d published evaluations", len(out.evaluation_ids), exc_info=True)
    return out


def queue_depths(settings: Settings | None = None) -> dict[str, int] | None:
    """Messages waiting per routed queue (gpu, cpu, any; None if the broker cannot be asked)."""
    settings = settings or get_settings()
    names = [queue_name(settings, c) for c in DEVICE_CLASSES]
    try:
        if settings.embedded_broker:
            # The filesystem transport names each message file ``<stamp>_<uuid>.<queue>.msg``.
            folder = settings.broker_dir / "queue"
            files = [p.name for p in folder.iterdir()] if folder.exists() else []
            return {q: sum(1 for f in files if f.endswith(f".{q}.msg")) for q in names}
        import redis

        client = redis.Redis.from_url(settings.effective_broker_url, socket_timeout=2)
        try:
            # A queue is one Redis list per priority step (PRIORITY_STEPS).
            with client.pipeline() as pipe:
                for q in names:
                    for key in priority_keys(q):
                        pipe.llen(key)
                lengths = [int(n) for n in pipe.execute()]
            width = len(PRIORITY_STEPS)
            return {q: sum(lengths[i * width : (i + 1) * width]) for i, q in enumerate(names)}
        finally:
            client.close()
    except Exception:
        log.warning("cannot read the broker queue depth", exc_info=True)
        return None


def queue_depth(settings: Settings | None = None) -> int | None:
    """Messages waiting in all routed queues together (None if the broker cannot be asked)."""
    depths = queue_depths(settings)
    return None if depths is None else sum(depths.values())


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
