"""Funnel batches (reports.md, "Funnel"): cheap measures on every item, the expensive methods only on
the top of them.

At submission the funnel's expensive entries become method entries of the batch (aliases and config
hashes like any other) with no evaluations yet; ``options.funnel_stage`` records which they are. When
every evaluation of the measure's methods is finished, ``advance`` keeps the top of the measure's
ranking and creates (through ``app.lifecycle.link_or_reuse``, the one creator of evaluations) and links
the expensive evaluations of the kept architectures only. Who calls it: the worker right after it
stored a result (the last cheap result advances the funnel at once), and the worker's maintenance loop
as a backstop (a worker killed between storing and advancing, an evaluation the reaper marked lost).
Two advances of one batch are harmless: the batch row is locked, the stage re-read, and links are
inserted with ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, String, exists, select
from sqlalchemy.orm import Session

from app.batch_versions import touch_batch
from app.lifecycle import EvaluationSpec, link_or_reuse
from app.models import PENDING, Batch, BatchEvaluation, BatchMethod, utcnow
from app.services.sql import insert_select

log = logging.getLogger(__name__)

STAGE_KEY = "funnel_stage"  # in Batch.options: what submission planned and what advance decided
FILTERED = "filtered"  # the row status of an item the funnel did not keep
WAITING = "waiting"  # the row status of an item whose expensive stage has not started


@dataclass(frozen=True)
class FunnelStage:
    measure: str
    keep_fraction: float | None
    keep: int | None
    methods: tuple[str, ...]  # aliases of the expensive entries
    advanced: bool
    kept: tuple[str, ...]  # architecture keys kept, best first (empty until advanced)
    n_candidates: int | None

    def describe(self) -> str:
        share = f"{self.keep}" if self.keep is not None else f"{self.keep_fraction:g} of the candidates"
        return f"top {share} by {self.measure}"


def stage_of(batch: Batch) -> FunnelStage | None:
    options = batch.options or {}
    funnel, stage = options.get("funnel"), options.get(STAGE_KEY)
    if not funnel or not stage:
        return None
    return FunnelStage(
        measure=str(funnel["measure"]),
        keep_fraction=funnel.get("keep_fraction"),
        keep=funnel.get("keep"),
        methods=tuple(stage.get("methods", ())),
        advanced=bool(stage.get("advanced")),
        kept=tuple(stage.get("kept") or ()),
        n_candidates=stage.get("n_candidates"),
    )


def initial_stage(methods: Sequence[str]) -> dict[str, Any]:
    return {"methods": list(methods), "advanced": False, "kept": None, "n_candidates": None}


def is_stage_method(batch: Batch, method: BatchMethod) -> bool:
    stage = stage_of(batch)
    return stage is not None and method.alias in stage.methods


def waiting(batch: Batch) -> bool:
    """True while the funnel's expensive stage has not been created yet."""
    stage = stage_of(batch)
    return stage is not None and not stage.advanced


def missing_row_status(batch: Batch, method: BatchMethod) -> tuple[str, str] | None:
    """(status, reason) of an item that has no evaluation under a funnel's expensive method."""
    stage = stage_of(batch)
    if stage is None or method.alias not in stage.methods:
        return None
    if stage.advanced:
        return FILTERED, f"not kept: the funnel ran {method.alias} on the {stage.describe()} only"
    return WAITING, f"the funnel's cheap stage ({stage.measure}) has not finished"


def keep_count(stage: FunnelStage, n_candidates: int) -> int:
    """How many candidates the funnel keeps: ``keep``, or ceil(keep_fraction x candidates), at most all."""
    if stage.keep is not None:
        return min(stage.keep, n_candidates)
    return min(n_candidates, math.ceil((stage.keep_fraction or 1.0) * n_candidates - 1e-9))


def measure_listing(session: Session, batch: Batch, measure: str) -> list[dict[str, Any]] | None:
    """The cheap measure's ranking of the batch (a method or a composite), None while any is pending."""
    from app.catalog.methods import all_methods
    from app.services import batch_view, composite_view
    from app.services.reports.composite import CompositeRules
    from app.services.reports.ranking import rank_rows

    composite = composite_view.resolve_composite(batch, measure, CompositeRules(), ("options", "funnel"))
    if composite is not None:
        rows = composite_view.composite_rows(session, batch, composite)
        if any(r["pending"] for r in rows):
            return None
        return composite_view.ranked_listing(rows)
    entry = batch_view.method_by_alias(batch, measure)
    rows = batch_view.method_rows(session, batch, entry)
    if any(r["pending"] for r in rows):
        return None
    info = all_methods().get(entry.name)
    return rank_rows(rows, higher_is_better=info.higher_is_better if info else True)


def advance(session: Session, batch_id: str) -> list[list[int]]:
    """Start the expensive stage of a funnel batch when its cheap stage is over; returns the task
    payloads to publish after the commit (empty when nothing was created)."""
    from app.catalog.methods import all_methods
    from app.services import batch_view
    from app.services.submission import group_payloads

    batch = session.execute(
        select(Batch).where(Batch.id == batch_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if batch is None:
        return []
    stage = stage_of(batch)
    if stage is None or stage.advanced:
        return []
    listing = measure_listing(session, batch, stage.measure)
    if listing is None:
        return []
    items = batch_view.batch_items(session, batch)
    arch_of_key = {arch.key: arch.id for _, arch in items}
    ranked_keys = list(dict.fromkeys(r["key"] for r in listing if r["rank"] is not None))
    k = keep_count(stage, len(arch_of_key))
    kept = ranked_keys[:k]
    entries = [m for m in batch.methods if m.alias in stage.methods]
    specs = [EvaluationSpec(m.name, m.config_hash, m.scope, m.config) for m in entries]
    kept_ids = sorted(arch_of_key[key] for key in kept)
    linked = link_or_reuse(session, batch.dataset, batch.seed, specs, kept_ids)
    pairs = [(m.id, linked.ids[(pos, a)]) for pos, m in enumerate(entries) for a in kept_ids]
    if pairs:
        session.execute(
            insert_select(
                session,
                BatchEvaluation.__table__,  # type: ignore[arg-type]
                {
                    "batch_method_id": (BigInteger(), [m for m, _ in pairs]),
                    "evaluation_id": (BigInteger(), [e for _, e in pairs]),
                },
                {"batch_id": (String(), batch.id)},
            )
        )
    touch_batch(session, batch.id)  # its funnel entries have rows now, its stage-1 page marks the filtered
    state = dict(batch.options.get(STAGE_KEY) or {})
    state.update(advanced=True, kept=kept, n_candidates=len(arch_of_key), advanced_at=utcnow().isoformat())
    batch.options = {**batch.options, STAGE_KEY: state}  # a new dict: the JSON column sees the change
    session.flush()
    catalog = all_methods()
    family: dict[int, str] = {}
    arch: dict[int, int] = {}
    for (pos, a), eid in linked.ids.items():
        info = catalog.get(entries[pos].name)
        family[eid] = info.family if info else "training"
        arch[eid] = a
    log.info("funnel %s: kept %d of %d by %s", batch.id, len(kept), len(arch_of_key), stage.measure)
    return group_payloads(linked.new + linked.retried, family.__getitem__, arch.__getitem__)


def unlinked_method() -> ColumnElement[bool]:
    """A method entry with no evaluation linked yet: a funnel's expensive stage before it is created
    (correlated to ``BatchMethod``; the listing's "not finished" filter uses it too)."""
    return ~exists().where(
        BatchEvaluation.batch_id == BatchMethod.batch_id, BatchEvaluation.batch_method_id == BatchMethod.id
    )


def waiting_batches(session: Session, evaluation_ids: Collection[int] | None = None) -> list[str]:
    """Batches with a method entry that has no evaluation linked yet (a funnel's expensive stage),
    optionally only those the given evaluations belong to."""
    query = select(BatchMethod.batch_id).where(unlinked_method()).distinct()
    if evaluation_ids is not None:
        if not evaluation_ids:
            return []
        owners = select(BatchEvaluation.batch_id).where(
            BatchEvaluation.evaluation_id.in_(list(evaluation_ids))
        )
        query = query.where(BatchMethod.batch_id.in_(owners))
    candidates = list(session.scalars(query))
    return [b for b in candidates if (batch := session.get(Batch, b)) is not None and waiting(batch)]


def advance_waiting(evaluation_ids: Collection[int] | None = None) -> int:
    """Advance every waiting funnel (those of ``evaluation_ids`` only, when given), each in its own
    transaction, then publish what was created. Never raises: a failed advance is tried again by the
    next stored result or maintenance round. Returns the evaluations published."""
    from app.db import session_scope
    from app.services.queue import enqueue

    try:
        with session_scope() as session:
            batch_ids = waiting_batches(session, evaluation_ids)
    except Exception:
        log.warning("funnel: could not look for waiting funnels", exc_info=True)
        return 0
    published = 0
    for batch_id in batch_ids:
        try:
            with session_scope() as session:
                payloads = advance(session, batch_id)
        except Exception:
            log.warning("funnel %s: advance failed; retried later", batch_id, exc_info=True)
            continue
        if payloads:
            published += len(enqueue(payloads).evaluation_ids)
    return published


@dataclass(frozen=True)
class FunnelCosts:
    cheap_s: float  # every cost of the measure's evaluations over the batch's architectures
    expensive_s: float  # the expensive method's costs over the kept architectures
    expensive_mean_s: float | None
    estimated_all_s: float | None  # the expensive method on every candidate, from the measured mean
    n_measured: int


def costs(
    cheap_rows: Mapping[str, Sequence[Mapping[str, Any]]], expensive_rows: Sequence[Mapping[str, Any]], n: int
) -> FunnelCosts:
    cheap = 0.0
    for rows in cheap_rows.values():
        seen: set[str] = set()
        for r in rows:
            if r["key"] not in seen and r.get("cost_s") is not None:
                seen.add(r["key"])
                cheap += float(r["cost_s"])
    by_key: dict[str, float] = {}
    for r in expensive_rows:
        if r.get("cost_s") is not None and r.get("evaluation_id") is not None:
            by_key.setdefault(r["key"], float(r["cost_s"]))
    spent = sum(by_key.values())
    mean = spent / len(by_key) if by_key else None
    return FunnelCosts(
        cheap_s=cheap,
        expensive_s=spent,
        expensive_mean_s=mean,
        estimated_all_s=None if mean is None else mean * n,
        n_measured=len(by_key),
    )


def pending_statuses() -> tuple[str, ...]:
    return (*PENDING, WAITING)
