"""Read side of a batch: status counts, live progress, and per-method result rows."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.ownership import visible_batch
from app.auth.principal import Principal
from app.catalog.methods import all_methods
from app.errors import InputError, NotFound
from app.models import (
    PENDING,
    RUNNING,
    STATUSES,
    Architecture,
    Batch,
    BatchEvaluation,
    BatchItem,
    BatchMethod,
    BatchVersion,
    Evaluation,
)
from app.services import eta as eta_service
from app.services import fleet
from app.services.ranking_cache import Fingerprint, RankingCache
from app.settings import Settings


def get_batch(session: Session, batch_id: str, principal: Principal) -> Batch:
    """The batch if ``principal`` may see it; another owner's batch is the same 404 as a missing id."""
    return visible_batch(session, principal, batch_id)


def owner_and_version(session: Session, batch_id: str) -> tuple[str | None, int]:
    """The batch's owner and version (app/batch_versions.py) in one query, where loading the batch
    and its methods takes three; the NotFound of :func:`get_batch` if there is no such batch."""
    row = session.execute(
        select(Batch.owner, BatchVersion.version)
        .outerjoin(BatchVersion, BatchVersion.batch_id == Batch.id)
        .where(Batch.id == batch_id)
    ).first()
    if row is None:
        raise NotFound(f"batch {batch_id!r}")
    return row.owner, int(row.version or 0)


def method_by_alias(batch: Batch, alias: str | None) -> BatchMethod:
    aliases = [m.alias for m in batch.methods]
    if alias is None:
        if len(batch.methods) == 1:
            return batch.methods[0]
        raise InputError(["query", "method"], f"this batch ran several methods; choose one of {aliases}")
    for m in batch.methods:
        if m.alias == alias:
            return m
    raise InputError(["query", "method"], f"this batch did not run method {alias!r}; it ran {aliases}")


def status(session: Session, batch: Batch, settings: Settings) -> dict[str, Any]:
    per_method: dict[str, dict[str, int]] = {m.alias: dict.fromkeys(STATUSES, 0) for m in batch.methods}
    alias_of = {m.id: m.alias for m in batch.methods}
    rows = session.execute(
        select(BatchEvaluation.batch_method_id, Evaluation.status, func.count())
        .join(Evaluation, Evaluation.id == BatchEvaluation.evaluation_id)
        .where(BatchEvaluation.batch_id == batch.id)
        .group_by(BatchEvaluation.batch_method_id, Evaluation.status)
    ).all()
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for mid, st, n in rows:
        per_method[alias_of[mid]][st] += n
        counts[st] += n
    overall = overall_status(counts, _funnel_waiting(batch))

    cost_rows = session.execute(
        select(
            BatchEvaluation.batch_method_id,
            func.avg(Evaluation.cost_s),
            func.sum(Evaluation.cost_s),
            func.count(),
        )
        .join(Evaluation, Evaluation.id == BatchEvaluation.evaluation_id)
        .where(BatchEvaluation.batch_id == batch.id, Evaluation.cost_s.is_not(None))
        .group_by(BatchEvaluation.batch_method_id)
    ).all()
    timings = {
        alias_of[mid]: {"mean_cost_s": avg, "total_cost_s": total, "n": n} for mid, avg, total, n in cost_rows
    }
    eta = _eta(session, batch, per_method, timings, settings)
    return {
        "batch_id": batch.id,
        "status": overall,
        "space": batch.space,
        "dataset": batch.dataset,
        "seed": batch.seed,
        "options": batch.options,
        "created_at": batch.created_at,
        "counts": counts,
        "methods": [
            {"alias": m.alias, "name": m.name, "preset": m.preset, "config_hash": m.config_hash}
            for m in batch.methods
        ],
        "per_method": per_method,
        "progress": progress(session, batch),
        "timings": timings,
        "eta_s": eta.seconds,
        "eta_basis": eta.basis,
        "cancelled_at": batch.cancelled_at,
        "cancel_reason": batch.cancel_reason,
    }


OverallStatus = Literal["queued", "running", "done"]


def overall_status(counts: Mapping[str, int], funnel_waiting: bool) -> OverallStatus:
    """A batch's status from its evaluations' status counts: 'queued' while nothing has started,
    'running' while anything is queued or running (or a funnel's expensive stage is still to be
    created), else 'done'. The one rule of ``getBatch`` and ``listBatches``."""
    queued, running = counts.get("queued", 0), counts.get("running", 0)
    pending = queued + running
    if pending == 0:
        return "running" if funnel_waiting else "done"
    return "running" if running or sum(counts.values()) > pending else "queued"


def _funnel_waiting(batch: Batch) -> bool:
    from app.services import funnel

    return funnel.waiting(batch)


def _eta(
    session: Session,
    batch: Batch,
    per_method: dict[str, dict[str, int]],
    timings: dict[str, dict[str, Any]],
    settings: Settings,
) -> eta_service.Eta:
    catalog = all_methods()
    pinned = (batch.options or {}).get("device_class")
    work: dict[str, dict[str, eta_service.MethodWork]] = {}
    for m in batch.methods:
        info = catalog.get(m.name)
        family = info.family if info else "training"
        counts = per_method[m.alias]
        mean = timings.get(m.alias, {}).get("mean_cost_s")
        cls = fleet.route(m.name, family, m.preset, pinned, settings)
        work.setdefault(cls, {})[m.alias] = eta_service.MethodWork(
            name=m.name,
            family=family,
            preset=m.preset,
            pending=counts["queued"] + counts["running"],
            measured_mean_s=None if mean is None else float(mean),
        )
    return eta_service.estimate_routed(work, fleet.consumers_per_class(session, settings, list(work)))


def progress(session: Session, batch: Batch, limit: int = 100) -> list[dict[str, Any]]:
    alias_of = {m.id: m.alias for m in batch.methods}
    rows = session.execute(
        select(Evaluation, BatchEvaluation.batch_method_id, Architecture.canonical, Architecture.index)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(Architecture, Architecture.id == Evaluation.architecture_id)
        .where(BatchEvaluation.batch_id == batch.id, Evaluation.status == RUNNING)
        .order_by(Evaluation.started_at)
        .limit(limit)
    ).all()
    return [
        {
            "evaluation_id": ev.id,
            "method": alias_of[mid],
            "genotype": canonical,
            "index": index,
            "attempt": ev.attempts,
            # The node name, as /v1/health lists it; the attempt's process id beside it.
            "worker": worker_node(ev.worker),
            "worker_pid": worker_pid(ev.worker),
            "device": ev.device,
            "started_at": ev.started_at,
            "heartbeat_at": ev.heartbeat_at,
            **(ev.progress or {}),
        }
        for ev, mid, canonical, index in rows
    ]


def worker_node(owner: str | None) -> str | None:
    """The worker node of an attempt's owner label ``<node>/<pid>`` (labels without a pid are
    the node name itself)."""
    if owner is None:
        return None
    node, sep, pid = owner.rpartition("/")
    return node if sep and pid.isdigit() else owner


def worker_pid(owner: str | None) -> int | None:
    _, sep, pid = (owner or "").rpartition("/")
    return int(pid) if sep and pid.isdigit() else None


# What rankings and reports read of an evaluation: the heavy JSON columns (config, info, timings)
# stay in the database unless a page of results asks for them (see ``attach_details``).
_LIGHT_COLUMNS = (
    Evaluation.id,
    Evaluation.architecture_id,
    Evaluation.method,
    Evaluation.status,
    Evaluation.score,
    Evaluation.score_kind,
    Evaluation.finite,
    Evaluation.reason,
    Evaluation.error,
    Evaluation.cost_s,
    Evaluation.attempts,
    Evaluation.device,
    Evaluation.config_hash,
    Evaluation.seed,
    Evaluation.started_at,
    Evaluation.finished_at,
)


def method_rows(
    session: Session, batch: Batch, method: BatchMethod, details: bool = False
) -> list[dict[str, Any]]:
    """One row per batch item (in submission order) with its evaluation under ``method``.
    Several items naming the same architecture share one evaluation. ``details`` adds the
    evaluation's ``info`` and ``timings`` to every row."""
    ev_by_arch: dict[int, Any] = {}
    for ev in session.execute(
        select(*_LIGHT_COLUMNS)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .where(BatchEvaluation.batch_id == batch.id, BatchEvaluation.batch_method_id == method.id)
    ):
        ev_by_arch[ev.architecture_id] = ev
    rows = [
        evaluation_row(ev_by_arch[arch.id], arch, item)
        if arch.id in ev_by_arch
        else unevaluated_row(batch, method, arch, item)
        for item, arch in batch_items(session, batch)
    ]
    if details:
        attach_details(session, rows)
    return rows


def unevaluated_row(batch: Batch, method: BatchMethod, arch: Any, item: Any) -> dict[str, Any]:
    """The row of an item with no evaluation under ``method``: a funnel's expensive entry before its
    stage starts (``waiting``, pending) or for an item the funnel did not keep (``filtered``)."""
    from app.services import funnel

    marked = funnel.missing_row_status(batch, method)
    if marked is None:  # only a funnel leaves an item without an evaluation
        raise RuntimeError(f"batch {batch.id}: item {item.position} has no evaluation under {method.alias}")
    status, reason = marked
    return {
        "key": arch.key,
        "label": item.label,
        "item_position": item.position,
        "genotype": arch.canonical,
        "index": arch.index,
        "degenerate": arch.degenerate,
        "architecture_key": arch.key,
        "evaluation_id": None,
        "method": method.name,
        "status": status,
        "score": None,
        "finite": None,
        "reason": reason,
        "cost_s": None,
        "attempts": 0,
        "device": None,
        "config_hash": method.config_hash,
        "seed": batch.seed,
        "started_at": None,
        "finished_at": None,
        "pending": status == funnel.WAITING,
    }


def attach_details(session: Session, rows: list[dict[str, Any]]) -> None:
    """Fill ``info`` and ``timings`` of the given rows (one query)."""
    ids = {r["evaluation_id"] for r in rows}
    found = {
        eid: (info, timings)
        for eid, info, timings in session.execute(
            select(Evaluation.id, Evaluation.info, Evaluation.timings).where(Evaluation.id.in_(ids))
        )
    }
    for r in rows:
        info, timings = found.get(r["evaluation_id"], ({}, {}))
        r["info"] = {k: v for k, v in (info or {}).items() if k != "traceback"}
        r["timings"] = timings or {}


def batch_items(session: Session, batch: Batch) -> list[tuple[Any, Any]]:
    """The batch's items with their architectures, in submission order, as (item, architecture)
    pairs of plain rows (one row serves as both: a 20,000-item batch is read without building
    40,000 ORM objects). Item fields: ``label``, ``position``; architecture fields: ``id``, ``key``,
    ``canonical``, ``index``, ``degenerate``, ``space``, ``iso_key``."""
    rows = session.execute(
        select(
            BatchItem.label,
            BatchItem.position,
            Architecture.id,
            Architecture.key,
            Architecture.canonical,
            Architecture.index,
            Architecture.degenerate,
            Architecture.space,
            Architecture.iso_key,
        )
        .join(Architecture, Architecture.id == BatchItem.architecture_id)
        .where(BatchItem.batch_id == batch.id)
        .order_by(BatchItem.position)
    ).all()
    return [(row, row) for row in rows]


def evaluation_row(ev: Any, arch: Any, item: Any = None) -> dict[str, Any]:
    """The one builder of result rows (rankings, reports, exports, architecture views): from an
    ``Evaluation`` (or a row of its light columns), its ``Architecture`` (or a row with its columns)
    and optionally the batch item (label, position). Non-finite scores are decoded here, once."""
    value = float(ev.score_kind) if ev.score_kind in ("nan", "inf", "-inf") else ev.score
    row = {
        "key": arch.key,
        "label": item.label if item else None,
        "item_position": item.position if item else None,
        "genotype": arch.canonical,
        "index": arch.index,
        "degenerate": arch.degenerate,
        "architecture_key": arch.key,
        "evaluation_id": ev.id,
        "method": ev.method,
        "status": ev.status,
        "score": value,
        "finite": ev.finite,
        "reason": ev.reason or (ev.error if ev.status in ("failed", "lost") else None),
        "cost_s": ev.cost_s,
        "attempts": ev.attempts,
        "device": ev.device,
        "config_hash": ev.config_hash,
        "seed": ev.seed,
        "started_at": ev.started_at,
        "finished_at": ev.finished_at,
        "pending": ev.status in PENDING,
    }
    if isinstance(ev, Evaluation):
        row["timings"] = ev.timings
        row["info"] = {k: v for k, v in (ev.info or {}).items() if k != "traceback"}
    return row


def ground_truth_map(
    session: Session, batch: Batch, set_name: str, keys: Collection[str] | None = None
) -> dict[str, float]:
    """Architecture key → ground-truth accuracy under a named set of this batch (only ``keys``,
    when given: a page of a ranking needs its own rows only)."""
    from app.models import GroundTruth

    query = (
        select(Architecture.key, GroundTruth.value)
        .join(Architecture, Architecture.id == GroundTruth.architecture_id)
        .where(GroundTruth.batch_id == batch.id, GroundTruth.set_name == set_name)
    )
    if keys is not None:
        query = query.where(Architecture.key.in_(list(keys)))
    return {k: v for k, v in session.execute(query).all()}


def _is_funnel_stage(batch: Batch, entry: BatchMethod) -> bool:
    from app.services import funnel

    return funnel.is_stage_method(batch, entry)


def _python_live_page(
    session: Session, batch: Batch, entry: BatchMethod, higher: bool, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int, int]:
    """A live page ranked in Python: a funnel's expensive entry has items without evaluations (waiting
    or filtered), which the SQL ranking, built on the evaluations, does not list."""
    from app.services.reports.ranking import rank_rows

    rows = method_rows(session, batch, entry)
    for r in rows:
        r["detail"] = r.pop("reason")
    listing = rank_rows(rows, higher_is_better=higher)
    return listing[offset : offset + limit], len(listing), sum(1 for r in rows if r["pending"])


def public(row: dict[str, Any]) -> dict[str, Any]:
    """JSON cannot carry NaN/inf: a non-finite score (or one the worker flagged non-finite) is sent
    as null plus ``score_repr``. The one place where stored scores are encoded for clients."""
    score = row.get("score")
    if score is not None and not math.isfinite(score):
        return {**row, "score": None, "score_repr": str(score)}
    if score is not None and row.get("finite") is False:
        return {**row, "score": None, "score_repr": "non-finite"}
    return {**row, "score_repr": None}


def ranking_page(
    session: Session,
    batch: Batch,
    entry: BatchMethod,
    cache: RankingCache,
    limit: int,
    offset: int,
    fp: Fingerprint | None,
) -> dict[str, Any]:
    """One page of the ranking of ``batch`` under method ``entry``; ``fp`` is the state fingerprint of
    its evaluations (None while any is pending), under which the finished listing is cached."""
    from app.services.reports.ranking import rank_rows

    info = all_methods().get(entry.name)
    higher = info.higher_is_better if info else True
    if fp is None and _is_funnel_stage(batch, entry):
        page, total, n_pending = _python_live_page(session, batch, entry, higher, limit, offset)
    elif fp is None:
        # live: the database ranks every row and returns the page only
        from app.services.ranking_sql import live_page

        page, total, n_pending = live_page(session, batch, entry, higher, limit, offset)
    else:
        key = (batch.id, entry.id)
        listing = cache.get(key, fp)
        if listing is None:
            rows = method_rows(session, batch, entry)
            for r in rows:
                r["detail"] = r.pop("reason")
            listing = rank_rows(rows, higher_is_better=higher)
            cache.put(key, fp, listing)
        # Copies: the cached listing is shared between requests.
        page = [dict(r) for r in listing[offset : offset + limit]]
        total, n_pending = len(listing), 0
    gt_set = batch.options.get("ground_truth_set", "client")
    gt = ground_truth_map(session, batch, gt_set, {r["architecture_key"] for r in page})
    attach_details(session, page)
    items = []
    for r in page:
        r["ground_truth"] = gt.get(r["architecture_key"])
        detail = r.get("detail")
        r["reason"] = r["reason"] if r["reason"] is None or not detail else f"{r['reason']} ({detail})"
        items.append(public(r))
    return {
        "batch_id": batch.id,
        "method": entry.alias,
        "higher_is_better": higher,
        "partial": n_pending > 0,
        "n_pending": n_pending,
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
    }
