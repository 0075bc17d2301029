"""Composite rankings read from a batch's stored evaluations (reports.md, "Composite rankings").

A composite is never stored: ranking, report, plots and export compute it on read from the member
measures' rows (``batch_view.method_rows``), so no config hash and no evaluation changes. The pure rank
arithmetic lives in ``app.services.reports.composite``; this module resolves the request's ``method``
(a ``composite:a+b+c`` spec or a named composite of ``options.composites``) against the batch and turns
the composite's entries into the same row shape as an evaluation's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.errors import InputError
from app.models import PENDING, Batch, BatchMethod
from app.services import batch_view
from app.services.reports.composite import (
    COMPOSITE_HIGHER_IS_BETTER,
    CompositeRules,
    CompositeSpec,
    CompositeSpecError,
    Direction,
    InfiniteRule,
    MeasureScores,
    MissingRule,
    composite_ranks,
    is_composite,
    parse_composite_spec,
)
from app.services.reports.ranking import rank_rows

COMPOSITE_METHOD_NAME = "composite"
# An unranked composite row takes the most telling member status (a failure says more than a NaN).
_STATUS_PRECEDENCE = ("running", "queued", "failed", "lost", "unmet", "rejected")


@dataclass(frozen=True)
class CompositeMethod:
    alias: str  # as the client named it: the spec itself, or the batch's name for it
    spec: CompositeSpec
    rules: CompositeRules
    members: tuple[BatchMethod, ...]

    @property
    def higher_is_better(self) -> bool:
        return COMPOSITE_HIGHER_IS_BETTER


def named_composites(batch: Batch) -> dict[str, str]:
    """The batch's named composites (``options.composites``): name → spec text."""
    raw = (batch.options or {}).get("composites") or {}
    return {str(k): str(v) for k, v in raw.items()}


def available_aliases(batch: Batch) -> list[str]:
    return [m.alias for m in batch.methods] + list(named_composites(batch))


def rules_from_query(missing: str | None, infinite: str | None) -> CompositeRules:
    """The composite rules from the ``composite_missing`` / ``composite_inf`` query parameters."""
    try:
        missing_rule = MissingRule(missing) if missing else MissingRule.WORST
    except ValueError:
        raise InputError(
            ["query", "composite_missing"],
            f"composite_missing must be one of {[r.value for r in MissingRule]}, got {missing!r}",
        ) from None
    try:
        inf_rule = InfiniteRule(infinite) if infinite else InfiniteRule.ORDER
    except ValueError:
        raise InputError(
            ["query", "composite_inf"],
            f"composite_inf must be one of {[r.value for r in InfiniteRule]}, got {infinite!r}",
        ) from None
    return CompositeRules(missing=missing_rule, infinite=inf_rule)


def parse_for_batch(batch: Batch, text: str, loc: Sequence[str | int]) -> CompositeSpec:
    """``text`` parsed with the batch's method aliases as the measures it may name (422 otherwise)."""
    aliases = [m.alias for m in batch.methods]
    try:
        return parse_composite_spec(text, available=aliases)
    except CompositeSpecError as exc:
        message = exc.message
        if exc.measure is None:
            message = f"{message}; this batch's measures: {', '.join(aliases)}"
        raise InputError(list(loc), message) from None


def resolve_composite(
    batch: Batch, method: str | None, rules: CompositeRules, loc: Sequence[str | int] = ("query", "method")
) -> CompositeMethod | None:
    """The composite ``method`` names in this batch, or None when it names no composite."""
    if method is None:
        return None
    named = named_composites(batch)
    if method in named and method not in {m.alias for m in batch.methods}:
        spec = parse_for_batch(batch, named[method], loc)
    elif is_composite(method):
        spec = parse_for_batch(batch, method, loc)
    else:
        return None
    by_alias = {m.alias: m for m in batch.methods}
    return CompositeMethod(
        alias=method, spec=spec, rules=rules, members=tuple(by_alias[a] for a in spec.measures)
    )


def resolve_method(batch: Batch, method: str | None, rules: CompositeRules) -> BatchMethod | CompositeMethod:
    """A stored method entry or a composite; an unknown name is a 422 listing everything available."""
    composite = resolve_composite(batch, method, rules)
    if composite is not None:
        return composite
    if method is not None and method not in {m.alias for m in batch.methods}:
        raise InputError(
            ["query", "method"],
            f"this batch did not run method {method!r}; available: {available_aliases(batch)} or "
            "composite:<alias>+<alias>...",
        )
    return batch_view.method_by_alias(batch, method)


def _measure_value(row: Mapping[str, Any]) -> float | None:
    """What the composite reads of one member row: the score of a done evaluation (NaN and ±inf as
    decoded, the rules decide), None when there is nothing (not done, no score). A finite number the
    worker flagged non-finite counts as NaN, as in the per-method ranking."""
    if row.get("status") != "done" or row.get("score") is None:
        return None
    value = float(row["score"])
    if math.isfinite(value) and row.get("finite") is False:
        return math.nan
    return value


def _member_direction(member: BatchMethod) -> Direction:
    from app.catalog.methods import all_methods

    info = all_methods().get(member.name)
    return Direction.HIGHER if (info.higher_is_better if info else True) else Direction.LOWER


def composite_rows(session: Session, batch: Batch, composite: CompositeMethod) -> list[dict[str, Any]]:
    """One row per batch item (submission order), shaped like ``batch_view.evaluation_row``: ``score``
    is the mean rank (lower is better), ``status`` ``done`` when ranked; plus ``measure_ranks``,
    ``imputed`` and ``composite_reason``. ``cost_s`` sums the members' costs."""
    member_rows = {m.alias: batch_view.method_rows(session, batch, m) for m in composite.members}
    by_key: dict[str, dict[str, Mapping[str, Any]]] = {}
    for alias, rows in member_rows.items():
        for r in rows:
            by_key.setdefault(r["key"], {}).setdefault(alias, r)
    measures = [
        MeasureScores(
            name=m.alias,
            direction=_member_direction(m),
            scores={key: _measure_value(members[m.alias]) for key, members in by_key.items()},
        )
        for m in composite.members
    ]
    result = composite_ranks(measures, composite.rules, keys=list(by_key))
    entry_of = {e.key: e for e in result.entries}
    first_alias = composite.members[0].alias
    out = []
    for template in member_rows[first_alias]:
        key = template["key"]
        members = by_key[key]
        entry = entry_of[key]
        statuses = [str(r["status"]) for r in members.values()]
        pending = [a for a, r in members.items() if r["status"] in PENDING]
        costs = [float(r["cost_s"]) for r in members.values() if r["cost_s"] is not None]
        status = "done"
        if entry.rank is None:
            status = next((s for s in _STATUS_PRECEDENCE if s in statuses), "done")
        reason = entry.reason
        if pending:
            note = f"pending: {', '.join(pending)} not finished"
            reason = note if reason is None else f"{reason}; {note}"
        out.append(
            {
                **{k: template[k] for k in ("key", "label", "item_position", "genotype", "index")},
                "degenerate": template["degenerate"],
                "architecture_key": key,
                "evaluation_id": None,
                "method": composite.spec.name,
                "status": status,
                "score": entry.mean_rank,
                "finite": entry.mean_rank is not None,
                "composite_reason": reason,
                "reason": None,
                "error": None,
                "cost_s": sum(costs) if costs else None,
                "attempts": None,
                "device": None,
                "config_hash": None,
                "seed": batch.seed,
                "started_at": None,
                "finished_at": max(
                    (r["finished_at"] for r in members.values() if r["finished_at"] is not None), default=None
                ),
                "pending": bool(pending),
                "measure_ranks": dict(entry.measure_ranks),
                "imputed": list(entry.imputed),
                "member_status": {a: str(r["status"]) for a, r in members.items()},
            }
        )
    return out


def ranked_listing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The composite rows ranked (ties averaged, as every ranking); an unranked row's reason is the
    composite's (which measure is missing, or that a member is pending)."""
    listing = rank_rows(rows, higher_is_better=COMPOSITE_HIGHER_IS_BETTER)
    for r in listing:
        if r["rank"] is None:
            r["reason"] = r.pop("composite_reason") or r["reason"]
        else:
            note = r.pop("composite_reason")
            r["reason"] = note  # a ranked row may still carry "pending: ..." while members run
    return listing


def ranking_page(
    session: Session, batch: Batch, composite: CompositeMethod, limit: int, offset: int
) -> dict[str, Any]:
    """One page of the composite ranking, in the shape of ``batch_view.ranking_page``."""
    rows = composite_rows(session, batch, composite)
    n_pending = sum(1 for r in rows if r["pending"])
    listing = ranked_listing(rows)
    page = [dict(r) for r in listing[offset : offset + limit]]
    gt_set = batch.options.get("ground_truth_set", "client")
    gt = batch_view.ground_truth_map(session, batch, gt_set, {r["architecture_key"] for r in page})
    items = []
    for r in page:
        r["ground_truth"] = gt.get(r["architecture_key"])
        r["info"] = {
            "measures": list(composite.spec.measures),
            "measure_ranks": r.pop("measure_ranks"),
            "imputed": r.pop("imputed"),
            "member_status": r.pop("member_status"),
            "rules": {"missing": composite.rules.missing.value, "inf": composite.rules.infinite.value},
        }
        items.append(batch_view.public(r))
    return {
        "batch_id": batch.id,
        "method": composite.alias,
        "higher_is_better": COMPOSITE_HIGHER_IS_BETTER,
        "partial": n_pending > 0,
        "n_pending": n_pending,
        "items": items,
        "total": len(listing),
        "limit": limit,
        "offset": offset,
        "composite": {
            "spec": composite.spec.name,
            "measures": list(composite.spec.measures),
            "missing": composite.rules.missing.value,
            "inf": composite.rules.infinite.value,
        },
    }
