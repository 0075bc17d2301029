"""Database side of reports: ground-truth sets, per-method rows, exports, cross-batch reports."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.catalog.methods import all_methods
from app.errors import InputError
from app.genotypes import GenotypeError, get_space
from app.models import Architecture, Batch, BatchEvaluation, BatchItem, Evaluation, GroundTruth, utcnow
from app.services import batch_view
from app.services.reports import DEFAULT_PERCENTS, build_report
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
) -> dict[str, Any]:
    """One report over one or more batches that share a ground-truth set (rows are pooled per alias)."""
    catalog = all_methods()
    rows_by_method: dict[str, list[dict[str, Any]]] = {}
    direction: dict[str, bool] = {}
    truth: dict[str, float] = {}
    gt_name = None
    gt_alias_all: set[str] = set()
    for batch in batches:
        gt_name, gt_values, gt_alias = resolve_ground_truth(session, batch, ground_truth)
        truth.update(gt_values)
        if gt_alias:
            gt_alias_all.add(gt_alias)
        aliases = [m.alias for m in batch.methods]
        wanted = methods or [a for a in aliases if a != gt_alias]
        for alias in wanted:
            entry = batch_view.method_by_alias(batch, alias)
            info = catalog.get(entry.name)
            direction[alias] = info.higher_is_better if info else True
            rows_by_method.setdefault(alias, []).extend(
                {
                    "key": r["key"],
                    "score": r["score"],
                    "finite": bool(r["finite"]),
                    "status": r["status"],
                    "cost_s": r["cost_s"],
                }
                for r in batch_view.method_rows(session, batch, entry)
            )
    if methods:
        for alias in methods:
            if alias not in rows_by_method:
                raise InputError(["query", "method"], f"no batch here ran method {alias!r}")
    fear_like = [a for a in rows_by_method if a == "fear" or a.startswith("fear")]
    result = build_report(
        rows_by_method,
        truth,
        higher_is_better=direction,
        percents=percents,
        reference=fear_like[0] if fear_like else next(iter(rows_by_method), "fear"),
        n_boot=n_boot,
        ground_truth_name=gt_name,
    )
    result["batch_ids"] = [b.id for b in batches]
    result["generated_at"] = utcnow().isoformat()
    return result


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
    by_label: dict[str, int] = {
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
                    parsed = space.from_index(
                        int(item.get("index") if item.get("index") is not None else item["nb201_index"])
                    )
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
            ev = evs[(mid, arch.id)]
            out.append(
                {
                    "batch_id": batch.id,
                    "item_position": item.position,
                    "label": item.label,
                    "ground_truth": gt.get(arch.key),
                    "method": m.alias,
                    "method_name": m.name,
                    "preset": m.preset,
                    "evaluation_id": ev.id,
                    "space": arch.space,
                    "genotype": arch.canonical,
                    "architecture_key": arch.key,
                    "index": arch.index,
                    "iso_key": arch.iso_key,
                    "degenerate": arch.degenerate,
                    "dataset": ev.dataset,
                    "seed": ev.seed,
                    "config_hash": ev.config_hash,
                    "status": ev.status,
                    "score": ev.score if ev.finite else None,
                    "score_kind": ev.score_kind,
                    "finite": ev.finite,
                    "reason": ev.reason,
                    "cost_s": ev.cost_s,
                    "attempts": ev.attempts,
                    "device": ev.device,
                    "worker": ev.worker,
                    "error": ev.error,
                    "created_at": _iso(ev.created_at),
                    "started_at": _iso(ev.started_at),
                    "finished_at": _iso(ev.finished_at),
                    "timings": ev.timings,
                    "info": {k: v for k, v in (ev.info or {}).items() if k != "traceback"},
                    "config": ev.config,
                }
            )
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for k, v in row.items()}
        )
    return buffer.getvalue()
