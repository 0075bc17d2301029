"""Database side of reports: ground-truth sets, per-method rows, exports, cross-batch reports."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.models import iso_utc
from app.batch_versions import touch_batch
from app.catalog.methods import all_methods
from app.errors import InputError
from app.genotypes import GenotypeError, get_space
from app.models import (
    PENDING,
    Architecture,
    Batch,
    BatchEvaluation,
    BatchItem,
    Evaluation,
    GroundTruth,
    utcnow,
)
from app.services import batch_view, composite_view
from app.services.reports import DEFAULT_PERCENTS, build_report, score_is_usable
from app.services.reports.composite import CompositeRules, is_composite
from app.services.sql import insert_ignore

MIN_ACCURACY, MAX_ACCURACY = 0.0, 100.0


def parse_percents(text: str | None) -> tuple[float, ...]:
    if not text:
        return DEFAULT_PERCENTS
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(
            ["query", "percents"], "percents must be comma-separated numbers, e.g. 10,20,50,100"
        ) from None
    if not values or any(not (0 < v <= 100) for v in values):
        raise InputError(["query", "percents"], "each percent must be in (0, 100], e.g. 10,20,50,100")
    return values


def ground_truth_sets(session: Session, batch: Batch) -> list[str]:
    names = session.scalars(
        select(GroundTruth.set_name).where(GroundTruth.batch_id == batch.id).distinct()
    ).all()
    return sorted(names)


def resolve_ground_truth(
    session: Session, batch: Batch, name: str | None
) -> tuple[str, dict[str, float], str | None]:
    """(name, key → accuracy, alias of the method used as ground truth or None).

    ``name`` is a stored set, or ``full`` / ``method:<alias>`` for the batch's own ``full`` results.
    Default: the client's set if present, else the batch's ``full`` method."""
    sets = ground_truth_sets(session, batch)
    full_aliases = [m.alias for m in batch.methods if m.name == "full"]
    if name is None:
        if sets:
            name = (
                batch.options.get("ground_truth_set", "client")
                if batch.options.get("ground_truth_set", "client") in sets
                else sets[0]
            )
        elif full_aliases:
            name = f"method:{full_aliases[0]}"
        else:
            raise InputError(
                ["query", "ground_truth"],
                "this batch has no ground truth: supply accuracies (items[].ground_truth, or PUT "
                f"/v1/batches/{batch.id}/ground_truth/<set>) or include the 'full' method",
            )
    if name == "full":
        if not full_aliases:
            raise InputError(["query", "ground_truth"], "this batch did not run the 'full' method")
        name = f"method:{full_aliases[0]}"
    if name.startswith("method:"):
        alias = name.removeprefix("method:")
        entry = batch_view.method_by_alias(batch, alias)
        values = {
            r["key"]: float(r["score"])
            for r in batch_view.method_rows(session, batch, entry)
            if r["status"] == "done" and r["score"] is not None and math.isfinite(r["score"])
        }
        # full's score is a test accuracy fraction (0..1); ground truth is reported in percent.
        return name, {k: 100.0 * v for k, v in values.items()}, alias
    if name not in sets:
        raise InputError(
            ["query", "ground_truth"],
            f"no ground-truth set {name!r} in this batch; available: "
            f"{sets + [f'method:{a}' for a in full_aliases]}",
        )
    return name, batch_view.ground_truth_map(session, batch, name), None


def report(
    session: Session,
    batches: Sequence[Batch],
    ground_truth: str | None,
    methods: list[str] | None,
    percents: tuple[float, ...],
    n_boot: int,
    rules: CompositeRules = CompositeRules(),
    reference_batch: Batch | None = None,
) -> dict[str, Any]:
    """One report over one or more batches that share a ground-truth set (rows are pooled per alias).
    A method may be a composite (a spec, or a named composite of the batch), computed on read."""
    catalog = all_methods()
    rows_by_method: dict[str, list[dict[str, Any]]] = {}
    direction: dict[str, bool] = {}
    name_of: dict[str, str] = {}
    truth: dict[str, float] = {}
    gt_name = None
    for batch in batches:
        with _naming(batch, len(batches) > 1):
            gt_name, gt_values, gt_alias = resolve_ground_truth(session, batch, ground_truth)
            truth.update(gt_values)
            aliases = [m.alias for m in batch.methods]
            wanted = methods or [a for a in aliases if a != gt_alias]
            if methods:
                here = set(aliases) | set(composite_view.named_composites(batch))
                wanted = (
                    [a for a in methods if a in here or is_composite(a)]
                    if len(batches) > 1
                    else list(methods)
                )
            if not methods:
                wanted += [n for n in composite_view.named_composites(batch) if n not in aliases]
            for alias in wanted:
                composite = composite_view.resolve_composite(batch, alias, rules, ("query", "method"))
                if composite is not None:
                    direction[alias] = composite.higher_is_better
                    name_of.setdefault(alias, composite_view.COMPOSITE_METHOD_NAME)
                    method_rows = composite_view.composite_rows(session, batch, composite)
                else:
                    entry = batch_view.method_by_alias(batch, alias)
                    info = catalog.get(entry.name)
                    direction[alias] = info.higher_is_better if info else True
                    name_of.setdefault(alias, entry.name)
                    method_rows = batch_view.method_rows(session, batch, entry)
                rows_by_method.setdefault(alias, []).extend(
                    {
                        "key": r["key"],
                        "score": r["score"],
                        "finite": bool(r["finite"]),
                        "status": "queued" if r["pending"] and r["status"] not in PENDING else r["status"],
                        "cost_s": r["cost_s"],
                    }
                    for r in method_rows
                )
    if methods:
        for alias in methods:
            if alias not in rows_by_method:
                raise InputError(["query", "method"], f"no batch here ran method {alias!r}")
    # the cost reference is the FEAR entry, chosen by method name (an alias is the client's free text)
    fear = [alias for alias, name in name_of.items() if name == "fear"]
    result = build_report(
        rows_by_method,  # type: ignore[arg-type]  # plain dicts carrying the EvaluationRow keys
        truth,
        higher_is_better=direction,
        percents=percents,
        reference=fear[0] if fear else next(iter(rows_by_method), "fear"),
        n_boot=n_boot,
        ground_truth_name=gt_name,
    )
    n_pending = sum(1 for rows in rows_by_method.values() for r in rows if r["status"] in PENDING)
    if len(batches) == 1:
        result["funnel"] = funnel_summary(session, batches[0], reference_batch, percents)
    result["partial"] = n_pending > 0
    result["n_pending"] = n_pending
    result["batch_ids"] = [b.id for b in batches]
    result["generated_at"] = utcnow()
    return result


def _usable_scores(rows: Sequence[dict[str, Any]], higher: bool) -> dict[Hashable, float | None]:
    """Key → score oriented so that higher is better, usable rows only (first row of a key wins)."""
    out: dict[Hashable, float | None] = {}
    for r in rows:
        if score_is_usable(r):
            out.setdefault(r["key"], float(r["score"]) if higher else -float(r["score"]))
    return out


def _cheap_rows(session: Session, batch: Batch, measure: str) -> dict[str, list[dict[str, Any]]]:
    """The rows of every method the funnel's measure rests on (the composite's members, or the one)."""
    composite = composite_view.resolve_composite(batch, measure, CompositeRules(), ("query", "method"))
    entries = composite.members if composite is not None else (batch_view.method_by_alias(batch, measure),)
    return {m.alias: batch_view.method_rows(session, batch, m) for m in entries}


def funnel_summary(
    session: Session, batch: Batch, reference: Batch | None, percents: Sequence[float]
) -> dict[str, Any] | None:
    """What a funnel batch spent and saved per expensive method, and, given a reference batch that ran
    the expensive method on every candidate, the top-% table (common, spe) of the funnel against it."""
    from app.services import funnel
    from app.services.reports.stats import top_percent_table

    stage = funnel.stage_of(batch)
    if stage is None:
        return None
    catalog = all_methods()
    cheap = _cheap_rows(session, batch, stage.measure)
    n = stage.n_candidates or len({arch.key for _, arch in batch_view.batch_items(session, batch)})
    out: dict[str, Any] = {
        "measure": stage.measure,
        "rule": stage.describe(),
        "advanced": stage.advanced,
        "n_candidates": n,
        "n_kept": len(stage.kept),
        "kept": list(stage.kept),
        "methods": {},
    }
    for entry in [m for m in batch.methods if m.alias in stage.methods]:
        info = catalog.get(entry.name)
        higher = info.higher_is_better if info else True
        rows = batch_view.method_rows(session, batch, entry)
        spent = funnel.costs(cheap, rows, n)
        total = spent.cheap_s + spent.expensive_s
        estimate = spent.estimated_all_s
        summary: dict[str, Any] = {
            "n_filtered": sum(1 for r in rows if r["status"] == funnel.FILTERED),
            "cheap_cost_s": spent.cheap_s,
            "expensive_cost_s": spent.expensive_s,
            "funnel_cost_s": total,
            "expensive_mean_s": spent.expensive_mean_s,
            "estimated_expensive_all_s": estimate,
            "saved_s": None if estimate is None else estimate - total,
            "cost_ratio": None if not estimate else total / estimate,
            "vs_reference": None,
        }
        if reference is not None:
            # the reference's entry of the same method: same config first, then same alias, then any;
            # never a funnel entry of this batch itself (the reference may be this very batch)
            candidates = [
                m
                for m in reference.methods
                if m.name == entry.name and not (reference.id == batch.id and m.alias in stage.methods)
            ]
            ref = (
                next((m for m in candidates if m.config_hash == entry.config_hash), None)
                or next((m for m in candidates if m.alias == entry.alias), None)
                or next(iter(candidates), None)
            )
            if ref is None:
                raise InputError(
                    ["query", "reference_batch"],
                    f"batch {reference.id!r} did not run {entry.name!r}; the reference batch runs the "
                    "expensive method on every candidate",
                )
            truth = _usable_scores(batch_view.method_rows(session, reference, ref), higher)
            summary["vs_reference"] = {
                "batch_id": reference.id,
                "method": ref.alias,
                "n_reference": len(truth),
                "top_percent": top_percent_table(
                    truth,
                    _usable_scores(rows, higher),
                    {r["key"]: r["cost_s"] for r in rows if r["evaluation_id"] is not None},
                    percents,
                ),
            }
        out["methods"][entry.alias] = summary
    return out


@contextmanager
def _naming(batch: Batch, several: bool) -> Iterator[None]:
    """In a report over several batches, say which batch an input error is about."""
    try:
        yield
    except InputError as exc:
        if not several:
            raise
        for e in exc.errors:
            e["msg"] = f"batch {batch.id!r}: {e['msg']}"
        exc.detail = f"batch {batch.id!r}: {exc.detail}"
        raise


@dataclass(frozen=True)
class ScatterRows:
    """What the score-vs-ground-truth plot draws: rows per method, the truth, and what is pending."""

    name: str
    truth: dict[str, float]
    rows_by_method: dict[str, list[dict[str, Any]]]
    pending_by_method: dict[str, int]


def scatter_rows(
    session: Session,
    batch: Batch,
    ground_truth: str | None,
    methods: list[str] | None,
    rules: CompositeRules = CompositeRules(),
) -> ScatterRows:
    name, truth, gt_alias = resolve_ground_truth(session, batch, ground_truth)
    aliases = methods or [m.alias for m in batch.methods if m.alias != gt_alias]
    rows_by_method: dict[str, list[dict[str, Any]]] = {}
    pending: dict[str, int] = {}
    if not methods:
        aliases += [n for n in composite_view.named_composites(batch) if n not in aliases]
    for alias in aliases:
        composite = composite_view.resolve_composite(batch, alias, rules, ("query", "method"))
        if composite is not None:
            source = composite_view.composite_rows(session, batch, composite)
        else:
            source = batch_view.method_rows(session, batch, batch_view.method_by_alias(batch, alias))
        unique: dict[str, dict[str, Any]] = {}
        for r in source:
            unique.setdefault(r["key"], r)
        rows = [
            {"key": r["key"], "score": r["score"] if score_is_usable(r) else None}
            for r in unique.values()
            if not r["pending"]
        ]
        pending[alias] = sum(1 for r in unique.values() if r["pending"] and r["key"] in truth)
        rows_by_method[alias] = rows
    return ScatterRows(name, truth, rows_by_method, pending)


def put_ground_truth(
    session: Session, batch: Batch, set_name: str, items: list[dict[str, Any]]
) -> dict[str, int]:
    """Upsert accuracies by architecture (genotype, index or the batch item's label). Idempotent.
    All-or-nothing: any bad item rejects the whole request."""
    space = get_space(batch.space)
    in_batch: dict[str, int] = {
        key: aid
        for key, aid in session.execute(
            select(Architecture.key, Architecture.id)
            .join(BatchItem, BatchItem.architecture_id == Architecture.id)
            .where(BatchItem.batch_id == batch.id)
        )
    }
    by_label: dict[str | None, int] = {
        label: aid
        for label, aid in session.execute(
            select(BatchItem.label, BatchItem.architecture_id).where(
                BatchItem.batch_id == batch.id, BatchItem.label.is_not(None)
            )
        )
    }
    values: dict[int, float] = {}
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        loc: list[str | int] = ["body", "items", i]
        try:
            if item.get("label") is not None:
                aid = by_label.get(item["label"])
                if aid is None:
                    raise InputError([*loc, "label"], f"no item of this batch has label {item['label']!r}")
            else:
                if item.get("genotype") is not None:
                    parsed = space.parse(item["genotype"])
                elif item.get("index") is not None or item.get("nb201_index") is not None:
                    index = item.get("index")
                    parsed = space.from_index(int(index if index is not None else item["nb201_index"]))
                else:
                    raise InputError(loc, "give one of 'genotype', 'index', 'nb201_index' or 'label'")
                aid = in_batch.get(parsed.key)
                if aid is None:
                    raise InputError(loc, f"architecture {parsed.canonical!r} is not in this batch")
            values[aid] = float(item["value"])
        except GenotypeError as exc:
            errors.append({"loc": [*loc, "genotype"], "msg": str(exc), "type": "genotype_error"})
        except InputError as exc:
            errors.extend(exc.errors)
    if errors:
        raise InputError.many(errors)
    now = utcnow()
    existing = {
        g.architecture_id: g
        for g in session.scalars(
            select(GroundTruth).where(GroundTruth.batch_id == batch.id, GroundTruth.set_name == set_name)
        )
    }
    created = updated = 0
    for aid, value in values.items():
        if aid in existing:
            if existing[aid].value != value:
                existing[aid].value = value
                existing[aid].updated_at = now
                updated += 1
        else:
            session.execute(
                insert_ignore(session, GroundTruth.__table__, ["batch_id", "set_name", "architecture_id"]),  # type: ignore[arg-type]
                [
                    {
                        "batch_id": batch.id,
                        "set_name": set_name,
                        "architecture_id": aid,
                        "value": value,
                        "updated_at": now,
                    }
                ],
            )
            created += 1
    if created or updated:
        touch_batch(session, batch.id)  # pages show the ground truth beside each item
    return {"created": created, "updated": updated, "unchanged": len(values) - created - updated}


EXPORT_FIELDS = [
    "batch_id",
    "item_position",
    "label",
    "ground_truth",
    "method",
    "method_name",
    "preset",
    "evaluation_id",
    "space",
    "genotype",
    "architecture_key",
    "index",
    "iso_key",
    "degenerate",
    "dataset",
    "seed",
    "config_hash",
    "status",
    "score",
    "score_kind",
    "finite",
    "reason",
    "cost_s",
    "attempts",
    "device",
    "worker",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "timings",
    "info",
    "config",
]


def composite_export_rows(
    session: Session, batch: Batch, extra: Sequence[str] = (), rules: CompositeRules = CompositeRules()
) -> list[dict[str, Any]]:
    """Export rows of the batch's named composites and of the ``extra`` specs, one per item each:
    score = mean rank (lower is better), ``info`` = per-measure ranks and imputed measures, ``config``
    = the spec and rules (nothing stored: ``evaluation_id`` and ``config_hash`` are null)."""
    named = composite_view.named_composites(batch)
    wanted = list(named) + [e for e in extra if e not in named]
    gt = batch_view.ground_truth_map(session, batch, batch.options.get("ground_truth_set", "client"))
    out = []
    for name in dict.fromkeys(wanted):
        composite = composite_view.resolve_composite(batch, name, rules, ("query", "composite"))
        if composite is None:
            raise InputError(
                ["query", "composite"],
                f"{name!r} is no composite; write composite:<alias>+<alias>... over "
                f"{[m.alias for m in batch.methods]}",
            )
        for r in composite_view.composite_rows(session, batch, composite):
            row = batch_view.public(r)
            out.append(
                {
                    **{k: row.get(k) for k in EXPORT_FIELDS},
                    "batch_id": batch.id,
                    "ground_truth": gt.get(r["key"]),
                    "method": composite.alias,
                    "method_name": composite_view.COMPOSITE_METHOD_NAME,
                    "preset": None,
                    "space": batch.space,
                    "dataset": batch.dataset,
                    "score_kind": "finite" if r["score"] is not None else None,
                    "reason": r["composite_reason"],
                    "info": {"measure_ranks": r["measure_ranks"], "imputed": r["imputed"]},
                    "config": {
                        "spec": composite.spec.name,
                        "missing": composite.rules.missing.value,
                        "inf": composite.rules.infinite.value,
                    },
                }
            )
    return out


def export_rows(session: Session, batch: Batch) -> list[dict[str, Any]]:
    """Every (item, method) pair with every stored field of its evaluation."""
    gt = batch_view.ground_truth_map(session, batch, batch.options.get("ground_truth_set", "client"))
    methods = {m.id: m for m in batch.methods}
    evs: dict[tuple[int, int], Evaluation] = {}
    for mid, ev in session.execute(
        select(BatchEvaluation.batch_method_id, Evaluation)
        .join(Evaluation, Evaluation.id == BatchEvaluation.evaluation_id)
        .where(BatchEvaluation.batch_id == batch.id)
    ):
        evs[(mid, ev.architecture_id)] = ev
    out = []
    for item, arch in batch_view.batch_items(session, batch):
        for mid, m in methods.items():
            found = evs.get((mid, arch.id))
            if found is None:  # a funnel's expensive entry: not kept, or its stage not started
                continue
            ev = found
            row = batch_view.public(batch_view.evaluation_row(ev, arch, item))
            out.append(
                {
                    **{k: row.get(k) for k in EXPORT_FIELDS},
                    "batch_id": batch.id,
                    "ground_truth": gt.get(arch.key),
                    "method": m.alias,
                    "method_name": m.name,
                    "preset": m.preset,
                    "space": arch.space,
                    "iso_key": arch.iso_key,
                    "dataset": ev.dataset,
                    "score_kind": ev.score_kind,
                    "reason": ev.reason,
                    "worker": ev.worker,
                    "error": ev.error,
                    "created_at": ev.created_at,
                    "config": ev.config,
                }
            )
    return out


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: JSON for structures, ISO 8601 UTC for times, and a text starting like a
    formula prefixed with ' so spreadsheets show it as text. Numbers stay numbers (a negative score
    is not a formula)."""
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True)
    elif isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, str) and value.startswith(_FORMULA_LEADS):
        return "'" + value
    return value


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buffer.getvalue()
