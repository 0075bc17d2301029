"""Claim → run → store, with ownership checks, heartbeats and live progress.

A worker owns an evaluation for one *attempt*: the claim is a conditional update queued → running
that increments ``attempts``; every later write (progress, result) is conditional on
``status = running AND attempts = <our attempt>``. A duplicate delivery claims nothing and does
nothing; a worker that lost its evaluation to the reaper cannot overwrite the new attempt.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from app import lifecycle
from app.db import retrying, session_scope
from app.lifecycle import Claim, Outcome
from app.models import Batch, Search, utcnow
from app.services.maintenance import owner_label
from app.services.submission import SEARCH_SCOPE_PREFIX
from app.settings import Settings, get_settings

__all__ = ["Claim", "Heartbeat", "ServiceContext", "claim", "store_failure", "store_results", "worker_name"]

log = logging.getLogger(__name__)


def worker_name() -> str:
    """This worker node's name: its beacon row and the first part of every claim's owner label.
    The main process sets FASTARCHRANK_WORKER_NAME before forking its pool, so children share it."""
    return os.environ.get("FASTARCHRANK_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def _retrying(fn: Any, what: str) -> Any:
    s = get_settings()
    return retrying(fn, s.db_retry_attempts, s.db_retry_backoff_s, what=what)


def claim(evaluation_ids: list[int], device: str) -> list[Claim]:
    """Claim the still-queued evaluations of a message, retrying while the database is away; the
    last error is raised (the task then leaves its message to be delivered again)."""

    def once() -> list[Claim]:
        with session_scope() as session:
            return lifecycle.claim(session, evaluation_ids, device, owner_label(worker_name(), os.getpid()))

    return list(_retrying(once, "claim"))


def store_results(pairs: Sequence[tuple[Claim, Outcome]]) -> list[bool]:
    """Write results in one transaction, each only if we still own its attempt; retried while the
    database is away (the heartbeat keeps the attempt alive meanwhile)."""

    def once() -> list[bool]:
        with session_scope() as session:
            return lifecycle.complete(session, pairs)

    stored = list(_retrying(once, "result write"))
    _advance_funnels([c.evaluation_id for c, _ in pairs])
    return stored


def _advance_funnels(evaluation_ids: list[int]) -> None:
    """After a result is committed: a funnel whose cheap stage it finished starts its expensive stage
    now (the maintenance loop is the backstop). Never raises: the result is already stored."""
    from app.services.funnel import advance_waiting

    advance_waiting(evaluation_ids)


def store_failure(claim: Claim, exc: BaseException) -> None:
    summary = f"{type(exc).__name__}: {exc}"
    detail = "".join(traceback.format_exception(exc))

    def once() -> bool:
        with session_scope() as session:
            return lifecycle.fail(session, claim, summary, detail)

    _retrying(once, "failure write")
    _advance_funnels([claim.evaluation_id])


class Heartbeat:
    """Background thread keeping ``heartbeat_at`` fresh for the claimed evaluations, and the
    throttled writer of live progress. Liveness must not depend on how long an epoch takes."""

    def __init__(self, claims: list[Claim], settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.claims = {c.evaluation_id: c for c in claims}
        self.lost: set[int] = set()
        self._pending: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fastarchrank-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def set_progress(self, evaluation_id: int, fields: dict[str, Any]) -> None:
        with self._lock:
            self._pending[evaluation_id] = fields

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        now = utcnow()
        with session_scope() as session:
            for eid, c in self.claims.items():
                if eid in self.lost:
                    continue
                progress = {**pending[eid], "updated_at": now.isoformat()} if eid in pending else None
                if not lifecycle.heartbeat(session, c, now, progress):
                    self.lost.add(eid)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self.flush()
            except Exception:  # a DB hiccup must not kill the evaluation; the next beat retries
                log.warning("heartbeat failed", exc_info=True)


class ServiceContext:
    """The RunContext handed to methods (see worker/methods/base.py)."""

    def __init__(
        self, claim: Claim, heartbeat: Heartbeat, device: Any, datasets: Any, cap_class: str = "cpu"
    ) -> None:
        self.claim = claim
        self.heartbeat = heartbeat
        self.device = device
        # The device class FEAR's ratio cap compares within (the GPU model, or "cpu").
        self.cap_class = cap_class
        self._datasets = datasets
        self._budget_cache: tuple[float, tuple[str, float] | None] | None = None

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> Any:
        # Loading is cached per process, but a first synthetic generation can take minutes: say so.
        self.progress(phase="loading data", dataset=dataset)
        return self._datasets(
            dataset, data_config, lambda p: self.progress(phase="loading data", dataset=dataset, **p.fields())
        )

    def progress(self, **fields: Any) -> None:
        from worker.methods.base import LostOwnership

        if self.claim.evaluation_id in self.heartbeat.lost:
            raise LostOwnership(
                f"evaluation {self.claim.evaluation_id} was cancelled or taken over by another attempt"
            )
        self.heartbeat.set_progress(self.claim.evaluation_id, fields)

    def _cap(self) -> tuple[float, str] | None:
        """(ratio, basis) of this evaluation's cap scope, None if it has none (cached for 1 s)."""
        with session_scope() as session:
            if self.claim.scope.startswith(SEARCH_SCOPE_PREFIX):
                found = session.execute(
                    select(Search.ratio_to_fastest, Search.ratio_basis).where(
                        Search.scope == self.claim.scope
                    )
                ).one_or_none()
                return (float(found[0]), found[1] or "seconds") if found is not None else None
            options = session.scalar(select(Batch.options).where(Batch.id == self.claim.scope))
        if not options or not options.get("ratio_to_fastest"):
            return None
        return float(options["ratio_to_fastest"]), str(options.get("ratio_basis") or "seconds")

    def has_cap(self) -> bool:
        """Whether this evaluation's scope caps FEAR's stage 1 by the ratio to the fastest."""
        return bool(self.claim.scope) and self._cap() is not None

    def _budget(self, basis: str) -> float | None:
        if not self.claim.scope:
            return None
        now = time.monotonic()
        if self._budget_cache and now - self._budget_cache[0] < 1.0:  # at most one query per second
            cached = self._budget_cache[1]
            return cached[1] if cached is not None and cached[0] == basis else None
        budget: tuple[str, float] | None = None
        cap = self._cap()
        if cap is not None:
            ratio, cap_basis = cap
            with session_scope() as session:
                best = lifecycle.fastest(session, self.claim.scope, self.cap_class, cap_basis)
            if best is not None:
                budget = (cap_basis, ratio * best)
        self._budget_cache = (now, budget)
        return budget[1] if budget is not None and budget[0] == basis else None

    def stage1_budget_s(self) -> float | None:
        """Stage 1's budget in seconds: ratio x the fastest time-to-threshold of this scope *on this
        device class* (docs/lifecycle.md, "The ratio cap across devices"); None without a cap in
        seconds or before the class has a fastest time."""
        return self._budget("seconds")

    def stage1_budget_steps(self) -> float | None:
        """The same budget in optimizer steps (``options.ratio_basis = "steps"``)."""
        return self._budget("steps")

    def report_stage1_time(self, seconds: float, steps: int | None = None) -> None:
        if not self.claim.scope:
            return
        with session_scope() as session:
            lifecycle.record_fastest(session, self.claim.scope, self.cap_class, "seconds", seconds)
            if steps is not None:
                lifecycle.record_fastest(session, self.claim.scope, self.cap_class, "steps", float(steps))
            # The overall fastest, whatever the device, stays on the batch/search row for display.
            if self.claim.scope.startswith(SEARCH_SCOPE_PREFIX):
                session.execute(
                    update(Search)
                    .where(
                        Search.scope == self.claim.scope,
                        (Search.fastest_stage1_s.is_(None)) | (Search.fastest_stage1_s > seconds),
                    )
                    .values(fastest_stage1_s=seconds)
                )
            else:
                session.execute(
                    update(Batch)
                    .where(
                        Batch.id == self.claim.scope,
                        (Batch.fastest_stage1_s.is_(None)) | (Batch.fastest_stage1_s > seconds),
                    )
                    .values(fastest_stage1_s=seconds)
                )
        self._budget_cache = None
