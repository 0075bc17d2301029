"""Claim → run → store, with ownership checks, heartbeats and live progress.

A worker owns an evaluation for one *attempt*: the claim is a conditional update queued → running
that increments ``attempts``; every later write (progress, result) is conditional on
``status = running AND attempts = <our attempt>``. A duplicate delivery claims nothing and does
nothing; a worker that lost its evaluation to the reaper cannot overwrite the new attempt.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, update

from app.db import session_scope
from app.models import DONE, FAILED, QUEUED, REJECTED, RUNNING, UNMET, Architecture, Batch, Evaluation, utcnow
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)


def worker_name() -> str:
    return os.environ.get("FASTARCHRANK_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Claim:
    evaluation_id: int
    attempt: int
    method: str
    space: str
    genotype: str
    dataset: str
    seed: int
    scope: str
    config: dict[str, Any]


def _owned(claim: Claim):  # type: ignore[no-untyped-def]
    return and_(
        Evaluation.id == claim.evaluation_id,
        Evaluation.status == RUNNING,
        Evaluation.attempts == claim.attempt,
    )


def claim(evaluation_ids: list[int], device: str) -> list[Claim]:
    """Claim every still-queued evaluation of the payload in one conditional UPDATE; ids that are
    not queued any more (a duplicate delivery) are skipped."""
    if not evaluation_ids:
        return []
    now = utcnow()
    with session_scope() as session:
        claimed = session.execute(
            update(Evaluation)
            .where(Evaluation.id.in_(evaluation_ids), Evaluation.status == QUEUED)
            .values(
                status=RUNNING,
                attempts=Evaluation.attempts + 1,
                worker=worker_name(),
                device=device,
                started_at=now,
                heartbeat_at=now,
                progress={"phase": "starting"},
                error=None,
            )
            .returning(
                Evaluation.id,
                Evaluation.attempts,
                Evaluation.method,
                Evaluation.dataset,
                Evaluation.seed,
                Evaluation.scope,
                Evaluation.config,
                Evaluation.architecture_id,
            )
            .execution_options(synchronize_session=False)
        ).all()
        arch_ids = {row.architecture_id for row in claimed}
        archs = {
            a.id: (a.space, a.canonical)
            for a in session.execute(
                select(Architecture.id, Architecture.space, Architecture.canonical).where(
                    Architecture.id.in_(arch_ids)
                )
            )
        }
    skipped = set(evaluation_ids) - {row.id for row in claimed}
    if skipped:
        log.info("evaluations %s are not queued any more: duplicate delivery, skipped", sorted(skipped))
    order = {eid: i for i, eid in enumerate(evaluation_ids)}
    return sorted(
        (
            Claim(r.id, r.attempts, r.method, *archs[r.architecture_id], r.dataset, r.seed, r.scope, r.config)
            for r in claimed
        ),
        key=lambda c: order[c.evaluation_id],
    )


def store_result(claim: Claim, result: Any) -> bool:
    """Write a MethodResult if we still own the attempt. Returns whether it was written."""
    return store_results([(claim, result)])[0]


def store_results(pairs: list[tuple[Claim, Any]]) -> list[bool]:
    """Write several results in one transaction, each only if we still own its attempt."""
    written: list[bool] = []
    now = utcnow()
    with session_scope() as session:
        for claim, result in pairs:
            status = {"done": DONE, "unmet": UNMET, "rejected": REJECTED}[result.status]
            ev = Evaluation()
            ev.set_score(result.score)
            reason = result.reason
            if result.score is not None and not math.isfinite(result.score) and reason is None:
                reason = "non-finite score"
            ok = session.execute(
                update(Evaluation)
                .where(_owned(claim))
                .values(
                    status=status,
                    score=ev.score,
                    score_kind=ev.score_kind,
                    finite=ev.finite,
                    reason=reason,
                    cost_s=result.cost_s,
                    timings=_json_safe(result.timings),
                    info=_json_safe(result.info),
                    progress={"phase": "finished"},
                    finished_at=now,
                    heartbeat_at=now,
                )
            ).rowcount
            if not ok:
                log.warning(
                    "evaluation %s attempt %s lost ownership; result discarded",
                    claim.evaluation_id,
                    claim.attempt,
                )
            written.append(bool(ok))
    return written


def store_failure(claim: Claim, exc: BaseException) -> None:
    summary = f"{type(exc).__name__}: {exc}"[:2000]
    detail = "".join(traceback.format_exception(exc))[-8000:]
    with session_scope() as session:
        session.execute(
            update(Evaluation)
            .where(_owned(claim))
            .values(
                status=FAILED,
                error=summary,
                info={"traceback": detail},  # for operators; the API shows only ``error``
                finished_at=utcnow(),
                progress={"phase": "failed"},
            )
        )


def _json_safe(value: Any) -> Any:
    """JSON columns cannot hold NaN/inf: encode them as strings so nothing is silently lost."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _json_safe(value.item())
    return value


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
                values: dict[str, Any] = {"heartbeat_at": now}
                if eid in pending:
                    values["progress"] = _json_safe({**pending[eid], "updated_at": now.isoformat()})
                if not session.execute(update(Evaluation).where(_owned(c)).values(**values)).rowcount:
                    self.lost.add(eid)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self.flush()
            except Exception:  # a DB hiccup must not kill the evaluation; the next beat retries
                log.warning("heartbeat failed", exc_info=True)


class ServiceContext:
    """The RunContext handed to methods (see worker/methods/base.py)."""

    def __init__(self, claim: Claim, heartbeat: Heartbeat, device: Any, datasets: Any) -> None:
        self.claim = claim
        self.heartbeat = heartbeat
        self.device = device
        self._datasets = datasets
        self._budget_cache: tuple[float, float | None] | None = None

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> Any:
        # Loading is cached per process, but a first synthetic generation can take minutes: say so.
        self.progress(phase="loading data", dataset=dataset)
        return self._datasets(
            dataset, data_config, lambda p: self.progress(phase="loading data", dataset=dataset, **p.fields())
        )

    def progress(self, **fields: Any) -> None:
        from worker.methods.base import LostOwnership

        if self.claim.evaluation_id in self.heartbeat.lost:
            raise LostOwnership(f"evaluation {self.claim.evaluation_id} was taken over by another attempt")
        self.heartbeat.set_progress(self.claim.evaluation_id, fields)

    def stage1_budget_s(self) -> float | None:
        if not self.claim.scope:
            return None
        now = time.monotonic()
        if self._budget_cache and now - self._budget_cache[0] < 1.0:  # at most one query per second
            return self._budget_cache[1]
        with session_scope() as session:
            row = session.execute(
                select(Batch.fastest_stage1_s, Batch.options).where(Batch.id == self.claim.scope)
            ).one_or_none()
        budget = None
        if row is not None and row[0] is not None and row[1].get("ratio_to_fastest"):
            budget = float(row[1]["ratio_to_fastest"]) * float(row[0])
        self._budget_cache = (now, budget)
        return budget

    def report_stage1_time(self, seconds: float) -> None:
        if not self.claim.scope:
            return
        with session_scope() as session:
            session.execute(
                update(Batch)
                .where(
                    Batch.id == self.claim.scope,
                    (Batch.fastest_stage1_s.is_(None)) | (Batch.fastest_stage1_s > seconds),
                )
                .values(fastest_stage1_s=seconds)
            )
        self._budget_cache = None
