"""The evaluation lifecycle: the only module that writes ``Evaluation.status`` and the fields that go
with it (attempts, lease, heartbeat, owner, outcome). docs/lifecycle.md has the transition table.

Every transition is one conditional UPDATE (or INSERT … ON CONFLICT DO NOTHING), so concurrent actors
cannot both win: a duplicate delivery claims nothing, a superseded attempt writes nothing, two
sweepers lease an evaluation once. Torch-free: the API and the worker both import it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    CursorResult,
    DateTime,
    Integer,
    String,
    Table,
    Update,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from app.batch_versions import touch_batch, touch_evaluations
from app.models import Architecture, Batch, BatchEvaluation, ChangeCounter, Evaluation, FastestTime, utcnow
from app.services.sql import MAX_PARAMS, chunks, constant, id_array, insert_ignore, rows_source
from app.settings import Settings
from app.status import OUTCOMES, PENDING, RETRYABLE, TERMINAL, EvaluationStatus

__all__ = [
    "OUTCOMES",
    "PENDING",
    "RETRYABLE",
    "TERMINAL",
    "Claim",
    "EvaluationSpec",
    "EvaluationStatus",
    "Linked",
    "Outcome",
    "cancel_batch",
    "claim",
    "complete",
    "fail",
    "fastest",
    "heartbeat",
    "lease_for_publish",
    "link_or_reuse",
    "mark_published",
    "publish_due",
    "queued_companions",
    "reap",
    "record_fastest",
    "release_lease",
]

log = logging.getLogger(__name__)
Q = EvaluationStatus

# --- change sequence (incremental polling) ------------------------------------------------------------

CHANGE_SEQUENCE = "evaluation_change_seq"


def next_seq(session: Session) -> ColumnElement[int] | int:
    """A change-sequence value for the rows of one transition statement. PostgreSQL: ``nextval`` of a
    sequence (no row lock, so concurrent transitions never wait on each other; values are distinct
    and increasing, though commits can land out of order — the poll's grace covers that). SQLite:
    one counter row, bumped under the database's single write lock, so values follow commit order."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(ColumnElement[int], func.nextval(CHANGE_SEQUENCE))
    value = session.execute(
        update(ChangeCounter)
        .where(ChangeCounter.id == 1)
        .values(value=ChangeCounter.value + 1)
        .returning(ChangeCounter.value)
    ).scalar_one()
    return int(value)


def _stamp(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """The columns every transition sets besides its own: the change sequence and its time."""
    return {"updated_seq": next_seq(session), "changed_at": now or utcnow()}


# --- API: link-or-reuse at submission ----------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationSpec:
    """One method entry of a batch: everything of an evaluation's identity but the architecture."""

    method: str
    config_hash: str
    scope: str
    config: dict[str, Any]


@dataclass
class Linked:
    """Evaluation ids per (spec position, architecture id), and what submission did to each."""

    ids: dict[tuple[int, int], int] = field(default_factory=dict)
    new: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)


def _identity(spec: EvaluationSpec, dataset: str, seed: int) -> ColumnElement[bool]:
    return and_(
        Evaluation.dataset == dataset,
        Evaluation.method == spec.method,
        Evaluation.config_hash == spec.config_hash,
        Evaluation.seed == seed,
        Evaluation.scope == spec.scope,
    )


def _existing(
    session: Session, spec: EvaluationSpec, dataset: str, seed: int, arch_ids: Sequence[int]
) -> dict[int, tuple[int, str]]:
    if not arch_ids:
        return {}
    found: dict[int, tuple[int, str]] = {}
    for eid, arch, status in session.execute(
        select(Evaluation.id, Evaluation.architecture_id, Evaluation.status).where(
            _identity(spec, dataset, seed), Evaluation.architecture_id.in_(id_array(session, arch_ids))
        )
    ):
        found[arch] = (eid, status)
    return found


def _insert_new(
    session: Session, spec: EvaluationSpec, dataset: str, seed: int, arch_ids: Sequence[int], now: datetime
) -> dict[int, int]:
    """One ``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING`` for all architectures of a method
    entry: → queued. Returns architecture id → new evaluation id (rows a concurrent request
    inserted first are not returned)."""
    if not arch_ids:
        return {}
    table: Table = Evaluation.__table__  # type: ignore[assignment]
    (arch,) = rows_source(session, [(BigInteger(), arch_ids)])
    ts = DateTime(timezone=True)
    values = {
        "architecture_id": arch,
        "dataset": constant(session, dataset, String()),
        "method": constant(session, spec.method, String()),
        "config_hash": constant(session, spec.config_hash, String()),
        "seed": constant(session, seed, BigInteger()),
        "scope": constant(session, spec.scope, String()),
        "config": constant(session, spec.config, JSON()),
        "status": constant(session, Q.QUEUED.value, String()),
        "attempts": constant(session, 0, Integer()),
        "timings": constant(session, {}, JSON()),
        "info": constant(session, {}, JSON()),
        "progress": constant(session, {}, JSON()),
        "created_at": constant(session, now, ts),
        "queued_at": constant(session, now, ts),
        "changed_at": constant(session, now, ts),
    }
    seq = next_seq(session)
    values["updated_seq"] = constant(session, seq, BigInteger()) if isinstance(seq, int) else seq
    unique_cols = ["architecture_id", "dataset", "method", "config_hash", "seed", "scope"]
    # ``WHERE true``: SQLite would otherwise read the ON CONFLICT clause as a join condition.
    stmt = (
        insert_ignore(session, table, unique_cols)
        .from_select(list(values), select(*values.values()).where(true()))
        .returning(Evaluation.id, Evaluation.architecture_id)
    )
    return {a: eid for eid, a in session.execute(stmt)}


def link_or_reuse(
    session: Session, dataset: str, seed: int, specs: Sequence[EvaluationSpec], arch_ids: Iterable[int]
) -> Linked:
    """→ queued for every identity not stored yet; failed/lost → queued (a retry, attempts reset);
    anything else is reused as it is. Set-based: per method entry one lookup, one multi-row insert
    (in chunks under the bind-parameter limit) and one update, in architecture-id order so that
    concurrent overlapping submissions take row locks in the same order."""
    ordered = sorted(set(arch_ids))
    linked = Linked()
    now = utcnow()
    # Method entries in one canonical order too (row locks of two requests never cross).
    for pos, spec in sorted(enumerate(specs), key=lambda x: (x[1].method, x[1].config_hash, x[1].scope)):
        existing = _existing(session, spec, dataset, seed, ordered)
        fresh = [a for a in ordered if a not in existing]
        inserted = _insert_new(session, spec, dataset, seed, fresh, now)
        # A concurrent submission inserted these between our lookup and our insert: reuse them.
        raced = [a for a in fresh if a not in inserted]
        if raced:
            existing.update(_existing(session, spec, dataset, seed, raced))
        retry = sorted(eid for eid, status in existing.values() if status in RETRYABLE)
        for part in chunks(retry, MAX_PARAMS):
            session.execute(
                update(Evaluation)
                .where(Evaluation.id.in_(list(part)), Evaluation.status.in_(list(RETRYABLE)))
                .values(
                    status=Q.QUEUED,
                    attempts=0,
                    error=None,
                    reason=None,
                    queued_at=now,
                    enqueued_at=None,
                    worker=None,
                    cancel_requested_at=None,
                    **_stamp(session, now),
                )
                .execution_options(synchronize_session=False)
            )
        touch_evaluations(session, retry)  # queued again: the other batches linking them show it
        # A new (live) batch wants these: a pending cancel of another batch no longer applies.
        keep = sorted(eid for eid, status in existing.values() if status == Q.RUNNING)
        for part in chunks(keep, MAX_PARAMS):
            session.execute(
                update(Evaluation)
                .where(
                    Evaluation.id.in_(list(part)),
                    Evaluation.status == Q.RUNNING,
                    Evaluation.cancel_requested_at.is_not(None),
                )
                .values(cancel_requested_at=None)
                .execution_options(synchronize_session=False)
            )
        retry_set = set(retry)
        for arch in ordered:
            if arch in inserted:
                eid = inserted[arch]
                linked.new.append(eid)
            else:
                eid = existing[arch][0]
                (linked.retried if eid in retry_set else linked.reused).append(eid)
            linked.ids[(pos, arch)] = eid
    return linked


# --- publishing (API after commit, sweeper, reaper) -------------------------------------------------


def mark_published(session: Session, ids: Sequence[int], at: datetime | None = None) -> None:
    """Record that a message for these queued evaluations was handed to the broker."""
    at = at or utcnow()
    for part in chunks(sorted(ids), MAX_PARAMS):
        session.execute(
            update(Evaluation)
            .where(Evaluation.id.in_(list(part)), Evaluation.status == Q.QUEUED)
            .values(enqueued_at=at)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True)
class Leased:
    evaluation_id: int
    method: str
    architecture_id: int


def publish_due(queued_at: datetime, enqueued_at: datetime | None, now: datetime, settings: Settings) -> bool:
    """Whether a published but unclaimed evaluation's lease has run out. The lease grows with the
    time the evaluation has waited (``max(publish_lease_s, enqueued_at - queued_at)``, at most
    ``publish_lease_max_s``), so an evaluation deep in a long backlog is re-published every 10, 20,
    40, ... minutes instead of every 10: a lost message still gets a new one, and a backlog of hours
    does not pile up one duplicate per evaluation per lease."""
    if enqueued_at is None:
        return True
    waited = (enqueued_at - queued_at).total_seconds()
    lease = min(
        max(settings.publish_lease_s, waited), max(settings.publish_lease_max_s, settings.publish_lease_s)
    )
    return (now - enqueued_at).total_seconds() > lease


def lease_for_publish(
    session: Session, settings: Settings, limit: int, now: datetime, ids: Collection[int] = ()
) -> list[Leased]:
    """Take the publish lease (``enqueued_at = now``) of queued evaluations no live message will
    deliver: never published (older than ``requeue_after_s``), or published and not claimed within
    their lease (``publish_due``) — whatever the broker queue depth, so no message lost to a broker
    or database outage strands its evaluation. ``ids`` are leased if never published, at once (the
    reaper's re-queued evaluations). The base conditions are re-checked by the UPDATE itself, so two
    sweepers at once lease each evaluation once."""
    never = and_(
        Evaluation.enqueued_at.is_(None),
        Evaluation.queued_at < now - timedelta(seconds=settings.requeue_after_s),
    )
    expired = Evaluation.enqueued_at < now - timedelta(seconds=settings.publish_lease_s)
    due = or_(never, expired)
    if ids:
        due = or_(due, and_(Evaluation.enqueued_at.is_(None), Evaluation.id.in_(sorted(ids))))
    rows = session.execute(
        select(Evaluation.id, Evaluation.queued_at, Evaluation.enqueued_at)
        .where(Evaluation.status == Q.QUEUED, due)
        .order_by(Evaluation.id)
    ).all()
    # The grown lease is judged here (portable: no timestamp arithmetic on columns in SQL).
    candidates = [r[0] for r in rows if publish_due(r[1], r[2], now, settings)][:limit]
    if not candidates:
        return []
    leased: list[Any] = []
    for part in chunks(candidates, MAX_PARAMS):
        leased += session.execute(
            update(Evaluation)
            .where(Evaluation.id.in_(list(part)), Evaluation.status == Q.QUEUED, due)
            .values(enqueued_at=now)
            .returning(Evaluation.id, Evaluation.method, Evaluation.architecture_id)
            .execution_options(synchronize_session=False)
        ).all()
    return sorted((Leased(r[0], r[1], r[2]) for r in leased), key=lambda x: x.evaluation_id)


def release_lease(session: Session, ids: Sequence[int], lease: datetime) -> None:
    """The publish failed: make the evaluations due again at the next sweep (unless someone else
    leased or claimed them meanwhile)."""
    for part in chunks(sorted(ids), MAX_PARAMS):
        session.execute(
            update(Evaluation)
            .where(
                Evaluation.id.in_(list(part)), Evaluation.status == Q.QUEUED, Evaluation.enqueued_at == lease
            )
            .values(enqueued_at=None)
            .execution_options(synchronize_session=False)
        )


# --- worker: claim, heartbeat, complete, fail --------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One attempt at one evaluation, owned by the worker that claimed it."""

    evaluation_id: int
    attempt: int
    method: str
    space: str
    genotype: str
    dataset: str
    seed: int
    scope: str
    config: dict[str, Any]


def _changed(session: Session, stmt: Update) -> int:
    """Rows an UPDATE changed: 0 means its condition (the transition's precondition) did not hold."""
    result = cast(CursorResult[Any], session.execute(stmt))
    return result.rowcount


def _owned(c: Claim) -> ColumnElement[bool]:
    return and_(
        Evaluation.id == c.evaluation_id,
        Evaluation.status == Q.RUNNING,
        Evaluation.attempts == c.attempt,
    )


def claim(session: Session, evaluation_ids: Sequence[int], device: str, owner: str) -> list[Claim]:
    """queued → running for every still-queued id of a message, attempts + 1, in one conditional
    UPDATE. Ids that are not queued (a duplicate delivery, or already finished) claim nothing."""
    if not evaluation_ids:
        return []
    now = utcnow()
    claimed = session.execute(
        update(Evaluation)
        .where(Evaluation.id.in_(sorted(set(evaluation_ids))), Evaluation.status == Q.QUEUED)
        .values(
            status=Q.RUNNING,
            attempts=Evaluation.attempts + 1,
            worker=owner,
            device=device,
            started_at=now,
            heartbeat_at=now,
            progress={"phase": "starting"},
            error=None,
            reason=None,
            cancel_requested_at=None,
            **_stamp(session, now),
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
    archs = {
        a.id: (a.space, a.canonical)
        for a in session.execute(
            select(Architecture.id, Architecture.space, Architecture.canonical).where(
                Architecture.id.in_({r.architecture_id for r in claimed})
            )
        )
    }
    touch_evaluations(session, (r.id for r in claimed))
    skipped = set(evaluation_ids) - {r.id for r in claimed}
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


def queued_companions(session: Session, evaluation_id: int, limit: int) -> list[tuple[int, str]]:
    """Queued evaluations that differ from ``evaluation_id`` only in the architecture (same method,
    config hash, dataset, seed, scope, space and device class): (id, canonical genotype), oldest
    first, at most ``limit``. A worker may claim them with it to train them as one stacked network;
    the rows are only read here, ``claim`` takes whichever are still queued."""
    if limit < 1:
        return []
    own = session.execute(
        select(
            Evaluation.method,
            Evaluation.config_hash,
            Evaluation.dataset,
            Evaluation.seed,
            Evaluation.scope,
            Evaluation.device_class,
            Architecture.space,
        )
        .join(Architecture, Architecture.id == Evaluation.architecture_id)
        .where(Evaluation.id == evaluation_id)
    ).one_or_none()
    if own is None:
        return []
    rows = session.execute(
        select(Evaluation.id, Architecture.canonical)
        .join(Architecture, Architecture.id == Evaluation.architecture_id)
        .where(
            Evaluation.status == Q.QUEUED,
            Evaluation.id != evaluation_id,
            Evaluation.method == own.method,
            Evaluation.config_hash == own.config_hash,
            Evaluation.dataset == own.dataset,
            Evaluation.seed == own.seed,
            Evaluation.scope == own.scope,
            Evaluation.device_class.is_not_distinct_from(own.device_class),
            Architecture.space == own.space,
        )
        .order_by(Evaluation.id)
        .limit(limit)
    ).all()
    return [(int(r.id), str(r.canonical)) for r in rows]


CANCELLED_BY_REQUEST = "cancelled: its batch was cancelled"


def heartbeat(session: Session, c: Claim, now: datetime, progress: dict[str, Any] | None = None) -> bool:
    """running → running: refresh liveness (and live progress). running → cancelled when a cancel
    was requested: the attempt stops here, its last progress kept as the partial record. False =
    the attempt is not ours any more (cancelled, or the reaper gave it to another attempt)."""
    values: dict[str, Any] = {"heartbeat_at": now}
    if progress is not None:
        values["progress"] = json_safe(progress)
        values.update(_stamp(session, now))
    not_cancelled = Evaluation.cancel_requested_at.is_(None)
    if _changed(session, update(Evaluation).where(_owned(c), not_cancelled).values(**values)) > 0:
        return True
    stopped = _changed(
        session,
        update(Evaluation)
        .where(_owned(c), Evaluation.cancel_requested_at.is_not(None))
        .values(
            **values,
            **({} if progress is not None else _stamp(session, now)),
            status=Q.CANCELLED,
            reason=CANCELLED_BY_REQUEST,
            finished_at=now,
        ),
    )
    if stopped:
        touch_evaluations(session, [c.evaluation_id])
        log.info("evaluation %s attempt %s cancelled at its heartbeat", c.evaluation_id, c.attempt)
    return False


class Outcome(Protocol):
    """What a method returns (worker/methods/base.py MethodResult has these fields)."""

    @property
    def status(self) -> str: ...
    @property
    def score(self) -> float | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def cost_s(self) -> float | None: ...
    @property
    def timings(self) -> Mapping[str, Any]: ...
    @property
    def info(self) -> Mapping[str, Any]: ...


def encode_score(value: float | None) -> tuple[float | None, str | None, bool | None]:
    """(score, score_kind, finite): NaN cannot round-trip through SQLite, so the kind is recorded."""
    if value is None:
        return None, None, None
    if math.isfinite(value):
        return float(value), "finite", True
    return None, "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"), False


def complete(session: Session, pairs: Sequence[tuple[Claim, Outcome]]) -> list[bool]:
    """running → done | unmet | rejected, each only if the attempt is still ours (a superseded
    attempt's result is discarded). Returns which were written."""
    now = utcnow()
    written: list[bool] = []
    for c, result in pairs:
        status = Q(result.status)
        if status not in OUTCOMES:
            raise ValueError(f"complete() takes an outcome ({sorted(OUTCOMES)}), not {status!r}")
        score, kind, finite = encode_score(result.score)
        reason = result.reason
        if result.score is not None and not finite and reason is None:
            reason = "non-finite score"
        ok = _changed(
            session,
            update(Evaluation)
            .where(_owned(c))
            .values(
                status=status,
                score=score,
                score_kind=kind,
                finite=finite,
                reason=reason,
                cost_s=result.cost_s,
                timings=json_safe(result.timings),
                info=json_safe(result.info),
                progress={"phase": "finished"},
                finished_at=now,
                heartbeat_at=now,
                **_stamp(session, now),
            ),
        )
        if ok:
            touch_evaluations(session, [c.evaluation_id])
        else:
            log.warning(
                "evaluation %s attempt %s lost ownership; result discarded", c.evaluation_id, c.attempt
            )
        written.append(bool(ok))
    return written


def fail(session: Session, c: Claim, summary: str, detail: str) -> bool:
    """running → failed: the method raised. ``detail`` (a traceback) is for operators only. Then the
    failure budgets (``options.max_failed``) of the evaluation's batches are checked."""
    now = utcnow()
    ok = (
        _changed(
            session,
            update(Evaluation)
            .where(_owned(c))
            .values(
                status=Q.FAILED,
                error=summary[:2000],
                info={"traceback": detail[-8000:]},
                finished_at=now,
                progress={"phase": "failed"},
                **_stamp(session, now),
            ),
        )
        > 0
    )
    if ok:
        touch_evaluations(session, [c.evaluation_id])
        enforce_failure_budgets(session, [c.evaluation_id])
    return ok


# --- FEAR's ratio cap: the fastest time-to-threshold per scope and device class ---------------------


def record_fastest(session: Session, scope: str, device_class: str, basis: str, value: float) -> bool:
    """Lower the fastest time-to-threshold of ``scope`` on ``device_class`` (a GPU model string or
    "cpu") in ``basis`` ("seconds" or "steps") to ``value`` if it is faster. Insert-or-skip, then a
    conditional UPDATE: concurrent finishers keep the minimum. True if ``value`` is the new fastest."""
    table: Table = FastestTime.__table__  # type: ignore[assignment]
    now = utcnow()
    key = and_(
        FastestTime.scope == scope, FastestTime.device_class == device_class, FastestTime.basis == basis
    )
    stmt = insert_ignore(session, table, ["scope", "device_class", "basis"]).values(
        scope=scope, device_class=device_class, basis=basis, value=value, updated_at=now
    )
    inserted = session.execute(stmt.returning(FastestTime.scope)).first()
    if inserted is not None:
        return True
    return (
        _changed(
            session,
            update(FastestTime).where(key, FastestTime.value > value).values(value=value, updated_at=now),
        )
        > 0
    )


def fastest(session: Session, scope: str, device_class: str, basis: str) -> float | None:
    """The fastest time-to-threshold of ``scope`` measured on ``device_class`` (None: none yet —
    a device class never caps its first candidates by another class's speed)."""
    return session.scalar(
        select(FastestTime.value).where(
            FastestTime.scope == scope, FastestTime.device_class == device_class, FastestTime.basis == basis
        )
    )


# --- reaper: requeue stale, mark lost ----------------------------------------------------------------


@dataclass
class Reaped:
    requeued: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)


def reap(session: Session, settings: Settings, now: datetime, dead_owners: Collection[str] = ()) -> Reaped:
    """running → queued (attempts left) or → lost (none left) when the attempt's worker is gone: no
    heartbeat for ``stale_after_s``, or its owner is known dead (``dead_owners``: owner labels whose
    worker beacon stopped or whose process is gone)."""
    gone = or_(
        Evaluation.heartbeat_at.is_(None),
        Evaluation.heartbeat_at < now - timedelta(seconds=settings.stale_after_s),
    )
    if dead_owners:
        gone = or_(gone, Evaluation.worker.in_(sorted(dead_owners)))
    # Asked to stop and its worker is gone: it stops here instead of running again.
    stopped = session.scalars(
        update(Evaluation)
        .where(Evaluation.status == Q.RUNNING, gone, Evaluation.cancel_requested_at.is_not(None))
        .values(status=Q.CANCELLED, reason=CANCELLED_BY_REQUEST, finished_at=now, **_stamp(session, now))
        .returning(Evaluation.id)
        .execution_options(synchronize_session=False)
    ).all()
    requeued = session.scalars(
        update(Evaluation)
        .where(Evaluation.status == Q.RUNNING, gone, Evaluation.attempts < settings.max_attempts)
        .values(
            status=Q.QUEUED, queued_at=now, enqueued_at=None, worker=None, progress={}, **_stamp(session, now)
        )
        .returning(Evaluation.id)
        .execution_options(synchronize_session=False)
    ).all()
    lost = session.scalars(
        update(Evaluation)
        .where(Evaluation.status == Q.RUNNING, gone, Evaluation.attempts >= settings.max_attempts)
        .values(
            status=Q.LOST,
            finished_at=now,
            error=f"its worker stopped {settings.max_attempts} times (no heartbeat for "
            f"{settings.stale_after_s:.0f} s or the worker process died); resubmit to try again",
            **_stamp(session, now),
        )
        .returning(Evaluation.id)
        .execution_options(synchronize_session=False)
    ).all()
    touch_evaluations(session, [*stopped, *requeued, *lost])
    if lost:
        enforce_failure_budgets(session, list(lost))
    return Reaped(list(requeued), list(lost))


def running_owners(session: Session) -> list[str]:
    """Owner labels of the running evaluations (for the reaper's liveness check)."""
    return [
        w
        for w in session.scalars(select(Evaluation.worker).where(Evaluation.status == Q.RUNNING).distinct())
        if w
    ]


def json_safe(value: Any) -> Any:
    """JSON columns cannot hold NaN/inf: encode them as strings so nothing is silently lost."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return json_safe(value.item())
    return value


# --- cancel and failure budgets ----------------------------------------------------------------------

FAILURE_BUDGET_REASON = "failure budget exhausted"
_FAILED_KINDS = (Q.FAILED.value, Q.LOST.value)


@dataclass(frozen=True)
class Cancelled:
    """What one cancel changed (a second cancel changes nothing and reports zeros)."""

    cancelled: list[int]  # queued → cancelled
    stopping: list[int]  # running, asked to stop at the next heartbeat


def _live_elsewhere(batch_id: str) -> ColumnElement[bool]:
    """The evaluation also answers another batch that is not cancelled: it keeps going for that one."""
    other = BatchEvaluation.__table__.alias("other_link")
    return exists().where(
        other.c.evaluation_id == Evaluation.id,
        other.c.batch_id != batch_id,
        Batch.id == other.c.batch_id,
        Batch.cancelled_at.is_(None),
    )


def _stop_evaluations(
    session: Session, batch_id: str, now: datetime, reason: str, running_too: bool
) -> Cancelled:
    mine = and_(
        Evaluation.id.in_(select(BatchEvaluation.evaluation_id).where(BatchEvaluation.batch_id == batch_id)),
        ~_live_elsewhere(batch_id),
    )
    cancelled = session.scalars(
        update(Evaluation)
        .where(mine, Evaluation.status == Q.QUEUED)
        .values(status=Q.CANCELLED, reason=reason, finished_at=now, **_stamp(session, now))
        .returning(Evaluation.id)
        .execution_options(synchronize_session=False)
    ).all()
    touch_evaluations(session, cancelled)
    stopping: Sequence[int] = []
    if running_too:
        stopping = session.scalars(
            update(Evaluation)
            .where(mine, Evaluation.status == Q.RUNNING, Evaluation.cancel_requested_at.is_(None))
            .values(cancel_requested_at=now)
            .returning(Evaluation.id)
            .execution_options(synchronize_session=False)
        ).all()
    return Cancelled(sorted(cancelled), sorted(stopping))


def _mark_batch(session: Session, batch_id: str, now: datetime, reason: str) -> None:
    session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.cancelled_at.is_(None))
        .values(cancelled_at=now, cancel_reason=reason)
        .execution_options(synchronize_session=False)
    )


def cancel_batch(session: Session, batch_id: str, reason: str = "cancelled by its owner") -> Cancelled:
    """The batch stops: queued → cancelled (never started); running → cancel requested (its worker
    stores ``cancelled`` at its next heartbeat). Evaluations another live batch also uses are left
    alone. Idempotent: the batch keeps its first cancel time and reason."""
    now = utcnow()
    _mark_batch(session, batch_id, now, reason)
    touch_batch(session, batch_id)
    return _stop_evaluations(session, batch_id, now, f"cancelled: {reason}", running_too=True)


def enforce_failure_budgets(session: Session, evaluation_ids: Sequence[int]) -> list[str]:
    """After failures: every live batch of these evaluations whose ``options.max_failed`` is reached
    stops scheduling — its queued evaluations (not shared with another live batch) are cancelled;
    running ones finish. Returns the ids of the batches stopped."""
    if not evaluation_ids:
        return []
    linked = select(BatchEvaluation.batch_id).where(BatchEvaluation.evaluation_id.in_(sorted(evaluation_ids)))
    stopped: list[str] = []
    for batch_id, options in session.execute(
        select(Batch.id, Batch.options).where(Batch.id.in_(linked), Batch.cancelled_at.is_(None))
    ):
        budget = (options or {}).get("max_failed")
        if not budget:
            continue
        failed = session.scalar(
            select(func.count())
            .select_from(BatchEvaluation)
            .join(Evaluation, Evaluation.id == BatchEvaluation.evaluation_id)
            .where(BatchEvaluation.batch_id == batch_id, Evaluation.status.in_(_FAILED_KINDS))
        )
        if (failed or 0) < int(budget):
            continue
        now = utcnow()
        _mark_batch(session, batch_id, now, FAILURE_BUDGET_REASON)
        done = _stop_evaluations(session, batch_id, now, FAILURE_BUDGET_REASON, running_too=False)
        log.warning(
            "batch %s: %s evaluations failed (max_failed %s); %s queued evaluations cancelled",
            batch_id,
            failed,
            budget,
            len(done.cancelled),
        )
        stopped.append(batch_id)
    return stopped


def delete_unshared_evaluations(session: Session, batch_id: str) -> int:
    """Remove the batch's links and the evaluations no other batch uses (running ones included: their
    worker finds the row gone at its next heartbeat and stops; its writes change nothing). Shared
    evaluations stay, results and all. Returns how many evaluations were removed."""
    ids = sorted(
        session.scalars(
            select(BatchEvaluation.evaluation_id).where(BatchEvaluation.batch_id == batch_id).distinct()
        ).all()
    )
    session.execute(
        delete(BatchEvaluation)
        .where(BatchEvaluation.batch_id == batch_id)
        .execution_options(synchronize_session=False)
    )
    removed = 0
    for part in chunks(ids, MAX_PARAMS):
        still_used = exists().where(BatchEvaluation.evaluation_id == Evaluation.id)
        result = cast(
            CursorResult[Any],
            session.execute(
                delete(Evaluation)
                .where(Evaluation.id.in_(list(part)), ~still_used)
                .execution_options(synchronize_session=False)
            ),
        )
        removed += result.rowcount
    return removed
