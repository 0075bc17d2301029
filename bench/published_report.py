"""Re-report a recorded batch export against a published ground truth, beside the study's own one.

    python -m bench.published_report --export bench/results/cifar10_cpu/export.csv \\
        --ground-truth ../shared/data/nb201_cifar10_test_acc_fear1000.csv \\
        --key-column nb201_index --value-column cifar10_test_top1_200ep \\
        --ground-truth-name nb201-cifar10-test-200ep --out bench/results/cifar10_cpu_published

Nothing is re-run: the export holds every stored score. For each method, against each ground truth
(the published file, and the study's in-service ``full`` run when the export has one): n, Spearman ρ and
Kendall τ with percentile bootstrap 95% intervals, the paired Δρ against the best zero-cost measure with
its bootstrap interval, and the mean cost per architecture. Then a composite (mean of per-measure ranks,
app/services/reports/composite.py) chosen on one seeded half of the architectures and reported on the
other, and how that choice fares over many random halvings.

Statistics come from the project's helpers (app/services/reports/stats.py: ρ, τ and ρ's bootstrap;
bench/summary.py: the paired Δρ bootstrap). The one figure neither has, a bootstrap interval for τ, is
computed here on the same resamples as ρ's (see ``kendall_bootstrap_ci``).

"Best zero-cost measure" = the zero-cost measure (catalog family ``zero_cost``) with the highest ρ against
that ground truth over all architectures. Picking it on the same data favours the reference, so a Δρ
interval above 0 is conservative evidence for the other method. The composite is chosen and judged on
disjoint halves and so carries no such bias.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.catalog.methods import all_methods
from app.genotypes import GenotypeError, get_space
from app.services.reports.composite import (
    COMPOSITE_HIGHER_IS_BETTER,
    CompositeRules,
    CompositeSpecError,
    Direction,
    InfiniteRule,
    MeasureScores,
    MissingRule,
    choose_composite,
    composite_name,
    composite_ranks,
    parse_composite_spec,
    split_in_half,
)
from app.services.reports.ranking import score_is_usable
from app.services.reports.stats import bootstrap_ci, correlation, top_percent_table
from bench.summary import funnel_lines, paired_spearman_difference

DEFAULT_INTERNAL = "full"
CHEAP_FAMILIES = ("zero_cost", "static")  # the default pool of composite measures
REFERENCE_FAMILY = "zero_cost"
TOP_PERCENTS = (10.0, 20.0, 50.0)  # the FEAR paper's question: does the method find the best ones?


@dataclass(frozen=True)
class ExportRow:
    """What this report needs of one exported evaluation."""

    method: str  # the batch's alias
    method_name: str  # the catalog name
    preset: str
    key: str  # canonical architecture key
    index: int | None
    status: str
    score: float | None
    finite: bool
    cost_s: float | None


@dataclass(frozen=True)
class MethodInfoRow:
    alias: str
    method_name: str
    preset: str
    family: str
    higher_is_better: bool


@dataclass
class Interval:
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass
class MethodFigures:
    method: str
    n: int
    spearman: Interval
    kendall: Interval
    delta_vs_reference: Interval  # ρ(method) − ρ(reference), paired bootstrap
    n_delta: int


@dataclass
class GroundTruthBlock:
    name: str
    description: str
    n: int
    reference: str | None  # the best zero-cost measure against this ground truth
    methods: list[MethodFigures]
    top_percent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # alias -> the table


@dataclass
class CompositeBlock:
    ground_truth: str
    measures_pool: list[str]
    split_seed: int
    n_selection: int
    n_evaluation: int
    chosen: list[str]
    chosen_name: str
    selection_spearman: float | None
    evaluation: MethodFigures  # the composite on the evaluation half
    best_single: str  # the single measure best on the selection half
    best_single_selection_spearman: float | None
    best_single_evaluation: MethodFigures
    delta_vs_best_single: Interval  # paired, evaluation half
    cost_per_arch_s: float | None  # the chosen measures' mean costs added up
    top_candidates: list[dict[str, Any]]  # the best few subsets on the selection half
    repeats: dict[str, Any] = field(default_factory=dict)  # over many random halvings


# --- loading -----------------------------------------------------------------------------------------


def _float(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    return float(text)


def read_export(path: Path) -> list[ExportRow]:
    """The export CSV the harness writes (one row per evaluation, every stored field)."""
    with path.open(newline="") as handle:
        rows = []
        for raw in csv.DictReader(handle):
            index = raw.get("index") or ""
            rows.append(
                ExportRow(
                    method=raw["method"],
                    method_name=raw.get("method_name") or raw["method"],
                    preset=raw.get("preset") or "",
                    key=raw["architecture_key"],
                    index=int(index) if index.strip() else None,
                    status=raw["status"],
                    score=_float(raw.get("score")),
                    finite=(raw.get("finite") or "True").strip().lower() in ("true", "1"),
                    cost_s=_float(raw.get("cost_s")),
                )
            )
    if not rows:
        raise ValueError(f"{path}: the export holds no evaluation")
    return rows


def read_ground_truth(path: Path, key_column: str, value_column: str, space: str) -> dict[str, float]:
    """Architecture key → accuracy, the key canonicalised by the space (index or genotype column)."""
    parser = get_space(space)
    truth: dict[str, float] = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (key_column, value_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: no column {', '.join(missing)}; it has {', '.join(reader.fieldnames or [])}"
            )
        for line, raw in enumerate(reader, start=2):
            text = raw[key_column].strip()
            value = _float(raw[value_column])
            if value is None or not math.isfinite(value):
                continue
            try:
                arch = parser.from_index(int(text)) if text.lstrip("-").isdigit() else parser.parse(text)
            except GenotypeError as error:
                raise ValueError(f"{path}:{line}: {key_column} {text!r}: {error}") from error
            truth.setdefault(arch.key, value)
    if not truth:
        raise ValueError(f"{path}: no row with a finite {value_column}")
    return truth


def method_infos(rows: Sequence[ExportRow]) -> dict[str, MethodInfoRow]:
    catalog = all_methods()
    infos: dict[str, MethodInfoRow] = {}
    for row in rows:
        if row.method in infos:
            continue
        info = catalog.get(row.method_name)
        if row.method_name == "composite":  # a named composite the service exported: a mean rank
            infos[row.method] = MethodInfoRow(
                row.method, "composite", "", "composite", higher_is_better=COMPOSITE_HIGHER_IS_BETTER
            )
            continue
        infos[row.method] = MethodInfoRow(
            alias=row.method,
            method_name=row.method_name,
            preset=row.preset,
            family=info.family if info else "unknown",
            higher_is_better=info.higher_is_better if info else True,
        )
    return infos


def oriented_scores(
    rows: Sequence[ExportRow], infos: Mapping[str, MethodInfoRow]
) -> dict[str, dict[str, float]]:
    """alias → key → score with higher = better (first usable row per key, as the report does)."""
    out: dict[str, dict[str, float]] = {alias: {} for alias in infos}
    for row in rows:
        usable = score_is_usable({"status": row.status, "score": row.score, "finite": row.finite})
        if usable and row.score is not None:
            sign = 1.0 if infos[row.method].higher_is_better else -1.0
            out[row.method].setdefault(row.key, sign * row.score)
    return out


def mean_costs(rows: Sequence[ExportRow]) -> dict[str, float | None]:
    """alias → mean cost (s) per architecture over every evaluation with a cost (unmet/rejected too)."""
    costs: dict[str, list[float]] = {}
    for row in rows:
        bucket = costs.setdefault(row.method, [])
        if row.cost_s is not None and math.isfinite(row.cost_s):
            bucket.append(row.cost_s)
    return {alias: (float(np.mean(v)) if v else None) for alias, v in costs.items()}


# --- statistics --------------------------------------------------------------------------------------


FUNNEL_PERCENTS = (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)


def funnel_section(
    rows: Sequence[ExportRow],
    scores: Mapping[str, Mapping[str, float]],
    pairs: Sequence[tuple[str, str]],
    measure: str | None,
) -> dict[str, Any]:
    """A funnel's cost and top-% table from the export, in the service's report shape (``funnel``),
    for each (funnel alias, the same method's alias on every candidate): the cost of the cheap measure
    on every candidate plus the expensive method on the kept ones, against the expensive method's mean
    cost times every candidate; and the top-% table of the funnel against the method run on all."""
    candidates = {row.key for row in rows}
    spent: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in rows:
        if row.cost_s is not None and math.isfinite(row.cost_s):
            spent[row.method] = spent.get(row.method, 0.0) + row.cost_s
            counts[row.method] = counts.get(row.method, 0) + 1
    cheap = spent.get(measure, 0.0) if measure else 0.0
    methods: dict[str, Any] = {}
    kept = 0
    for funnel, full in pairs:
        if funnel not in scores or full not in scores:
            raise ValueError(f"--funnel {funnel}={full}: the export has no such method")
        kept = max(kept, counts.get(funnel, 0))
        expensive = spent.get(funnel, 0.0)
        estimated = expensive / max(counts.get(funnel, 0), 1) * len(candidates)
        total = cheap + expensive
        table = top_percent_table(
            _as_hashable(scores[full]), _as_hashable(scores[funnel]), {}, FUNNEL_PERCENTS
        )
        methods[funnel] = {
            "cheap_cost_s": cheap,
            "expensive_cost_s": expensive,
            "funnel_cost_s": total,
            "estimated_expensive_all_s": estimated,
            "saved_s": estimated - total,
            "cost_ratio": total / estimated if estimated else None,
            "vs_reference": {"method": full, "top_percent": table},
        }
    return {
        "rule": f"kept by {measure}" if measure else "",
        "n_kept": kept,
        "n_candidates": len(candidates),
        "methods": methods,
    }


def kendall_bootstrap_ci(
    xs: Sequence[float], ys: Sequence[float], n_boot: int, seed: int, level: float = 0.95
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of Kendall's τ-b, resampling pairs.

    scipy's kendalltau is one call per resample (10,000 × every method is minutes on two cores); here a
    resample is a row of draw counts c and τ-b = cᵀMc / sqrt(cᵀ|Sx|c · cᵀ|Sy|c), with Sx, Sy the signs of
    all pairwise differences and M = Sx·Sy (elementwise): every pair of draws is counted once per
    ordering in both numerator and denominator, and an element drawn twice meets itself with sign 0,
    a tie on both sides, exactly as scipy's τ-b counts it. The draws are
    ``default_rng(seed).integers(0, n, (n_boot, n))``, the same as ρ's bootstrap for that seed
    (stats.bootstrap_ci, summary.paired_spearman_difference), so the intervals share resamples.
    """
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    n = x.size
    if n < 3:
        return None, None
    picks = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    offsets = (np.arange(n_boot) * n)[:, None]
    counts = (
        np.bincount((picks + offsets).ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)
    )
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])

    def form(matrix: np.ndarray) -> np.ndarray:
        return ((counts @ matrix) * counts).sum(axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        draws = form(sx * sy) / np.sqrt(form(np.abs(sx)) * form(np.abs(sy)))
    draws = draws[np.isfinite(draws)]
    if draws.size * 2 < n_boot:
        return None, None
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def method_figures(
    name: str,
    truth: Mapping[str, float],
    scores: Mapping[str, float],
    reference: Mapping[str, float] | None,
    n_boot: int,
    seed: int,
) -> MethodFigures:
    keys = sorted(k for k in truth if k in scores)
    gt = [truth[k] for k in keys]
    values = [scores[k] for k in keys]
    corr = correlation(gt, values)
    rho_ci = bootstrap_ci(gt, values, n_boot=n_boot, seed=seed)
    tau_low, tau_high = (None, None)
    if corr["kendall"] is not None:
        tau_low, tau_high = kendall_bootstrap_ci(gt, values, n_boot=n_boot, seed=seed)
    delta = Interval(None)
    n_delta = 0
    if reference is not None:
        paired = paired_spearman_difference(
            dict(truth), dict(scores), dict(reference), n_boot=n_boot, seed=seed
        )
        delta = Interval(paired.get("delta"), paired.get("low"), paired.get("high"))
        n_delta = int(paired["n"])
    return MethodFigures(
        method=name,
        n=int(corr["n_used"]),
        spearman=Interval(corr["spearman"], rho_ci["low"], rho_ci["high"]),
        kendall=Interval(corr["kendall"], tau_low, tau_high),
        delta_vs_reference=delta,
        n_delta=n_delta,
    )


def best_reference(
    truth: Mapping[str, float], scores: Mapping[str, Mapping[str, float]], infos: Mapping[str, MethodInfoRow]
) -> str | None:
    """The zero-cost measure with the highest ρ against ``truth`` (None when there is none)."""
    best: tuple[float, str] | None = None
    for alias, info in infos.items():
        if info.family != REFERENCE_FAMILY:
            continue
        keys = [k for k in truth if k in scores[alias]]
        rho = correlation([truth[k] for k in keys], [scores[alias][k] for k in keys])["spearman"]
        if rho is not None and (best is None or rho > best[0]):
            best = (rho, alias)
    return best[1] if best else None


def _as_hashable(scores: Mapping[str, float]) -> dict[Hashable, float | None]:
    # top_percent_table is typed on Hashable keys; a dict is invariant in its key type
    return {key: value for key, value in scores.items()}


def ground_truth_block(
    name: str,
    description: str,
    truth: Mapping[str, float],
    scores: Mapping[str, Mapping[str, float]],
    infos: Mapping[str, MethodInfoRow],
    skip: Sequence[str],
    n_boot: int,
    seed: int,
) -> GroundTruthBlock:
    reference = best_reference(truth, scores, infos)
    ref_scores = scores[reference] if reference else None
    figures = [
        method_figures(alias, truth, scores[alias], ref_scores, n_boot, seed)
        for alias in infos
        if alias not in skip
    ]
    truth_any = _as_hashable(truth)
    top = {
        alias: top_percent_table(truth_any, _as_hashable(scores[alias]), {}, TOP_PERCENTS)
        for alias in infos
        if alias not in skip
    }
    return GroundTruthBlock(
        name=name,
        description=description,
        n=len(truth),
        reference=reference,
        methods=figures,
        top_percent=top,
    )


# --- the composite, chosen on one half and judged on the other ----------------------------------------


def _measure_scores(alias: str, scores: Mapping[str, float]) -> MeasureScores:
    # scores are already oriented (higher = better)
    return MeasureScores(alias, Direction.HIGHER, dict(scores))


def add_fixed_composite(
    text: str,
    infos: dict[str, MethodInfoRow],
    scores: dict[str, dict[str, float]],
    costs: dict[str, float | None],
    rules: CompositeRules,
) -> None:
    """Add a composite written in advance as one more method: its score is the negated mean rank (so
    higher = better, like every other column), its cost the sum of its measures' mean costs.

    Chosen before looking at this data, it needs no held-out half: its ρ over all architectures is as
    honest as any single measure's."""
    cheap = [a for a, info in infos.items() if info.family in CHEAP_FAMILIES]
    try:
        spec = parse_composite_spec(text, cheap)
    except CompositeSpecError as error:
        raise ValueError(f"--fixed-composite: {error}") from error
    result = composite_ranks([_measure_scores(a, scores[a]) for a in spec.measures], rules)
    scores[spec.name] = {key: -rank for key, rank in result.mean_ranks().items()}
    infos[spec.name] = MethodInfoRow(spec.name, "composite", "", "composite", higher_is_better=True)
    parts = [costs.get(a) for a in spec.measures]
    costs[spec.name] = sum(c for c in parts if c is not None) if all(c is not None for c in parts) else None


def _sizes(measures: Sequence[MeasureScores], max_size: int) -> list[int]:
    return list(range(1, min(max_size, len(measures)) + 1))


def composite_block(
    gt_name: str,
    truth: Mapping[str, float],
    scores: Mapping[str, Mapping[str, float]],
    costs: Mapping[str, float | None],
    pool: Sequence[str],
    rules: CompositeRules,
    split_seed: int,
    repeats: int,
    max_size: int,
    n_boot: int,
    seed: int,
) -> CompositeBlock:
    measures = [_measure_scores(alias, scores[alias]) for alias in pool]
    keys = [k for k in truth if any(k in scores[a] for a in pool)]
    split = split_in_half(keys, split_seed)
    choice = choose_composite(measures, truth, split, sizes=_sizes(measures, max_size), rules=rules)
    singles = [c for c in choice.candidates if len(c.measures) == 1 and c.spearman is not None]
    best_single = singles[0].measures[0]
    eval_truth = {k: truth[k] for k in split.evaluation}
    composite_scores = {k: -v for k, v in choice.evaluation_mean_ranks.items()}  # higher = better
    single_scores = {k: v for k, v in scores[best_single].items() if k in eval_truth}
    evaluation = method_figures(
        composite_name(choice.chosen),
        eval_truth,
        composite_scores,
        single_scores,
        n_boot,
        seed,
    )
    single_fig = method_figures(best_single, eval_truth, single_scores, None, n_boot, seed)
    chosen_costs = [costs.get(a) for a in choice.chosen]
    return CompositeBlock(
        ground_truth=gt_name,
        measures_pool=list(pool),
        split_seed=split_seed,
        n_selection=len(split.selection),
        n_evaluation=len(split.evaluation),
        chosen=list(choice.chosen),
        chosen_name=composite_name(choice.chosen),
        selection_spearman=choice.selection.spearman,
        evaluation=evaluation,
        best_single=best_single,
        best_single_selection_spearman=singles[0].spearman,
        best_single_evaluation=single_fig,
        delta_vs_best_single=evaluation.delta_vs_reference,
        cost_per_arch_s=sum(c for c in chosen_costs if c is not None)
        if all(c is not None for c in chosen_costs)
        else None,
        top_candidates=[
            {"measures": list(c.measures), "spearman": c.spearman, "n": c.n} for c in choice.candidates[:5]
        ],
        repeats=split_repeats(measures, truth, keys, rules, split_seed, repeats, max_size),
    )


def split_repeats(
    measures: Sequence[MeasureScores],
    truth: Mapping[str, float],
    keys: Sequence[str],
    rules: CompositeRules,
    first_seed: int,
    repeats: int,
    max_size: int,
) -> dict[str, Any]:
    """The same choose-on-one-half, judge-on-the-other over ``repeats`` random halvings: how often the
    chosen composite beats the single measure chosen the same way, judged on the evaluation half."""
    if repeats <= 0:
        return {}
    composite_rho, single_rho, sizes = [], [], []
    by_name = {m.name: m for m in measures}
    chosen_counts: dict[str, int] = {}
    for offset in range(repeats):
        split = split_in_half(keys, first_seed + 1 + offset)
        choice = choose_composite(measures, truth, split, sizes=_sizes(measures, max_size), rules=rules)
        singles = [c for c in choice.candidates if len(c.measures) == 1 and c.spearman is not None]
        single = by_name[singles[0].measures[0]].scores
        shared = [k for k in split.evaluation if k in single]
        single_corr = correlation([truth[k] for k in shared], [single[k] for k in shared])["spearman"]
        if choice.evaluation.spearman is None or single_corr is None:
            continue
        composite_rho.append(choice.evaluation.spearman)
        single_rho.append(single_corr)
        sizes.append(len(choice.chosen))
        name = composite_name(choice.chosen)
        chosen_counts[name] = chosen_counts.get(name, 0) + 1
    if not composite_rho:
        return {"repeats": repeats, "n_defined": 0}
    diff = np.asarray(composite_rho) - np.asarray(single_rho)
    most = sorted(chosen_counts.items(), key=lambda item: (-item[1], item[0]))[:5]
    return {
        "repeats": repeats,
        "n_defined": len(composite_rho),
        "seeds": [first_seed + 1, first_seed + repeats],
        "composite_eval_rho_median": float(np.median(composite_rho)),
        "composite_eval_rho_q10_q90": [float(q) for q in np.quantile(composite_rho, [0.1, 0.9])],
        "single_eval_rho_median": float(np.median(single_rho)),
        "single_eval_rho_q10_q90": [float(q) for q in np.quantile(single_rho, [0.1, 0.9])],
        "delta_median": float(np.median(diff)),
        "share_composite_better": float(np.mean(diff > 0)),
        "share_multi_measure": float(np.mean(np.asarray(sizes) > 1)),
        "most_chosen": [{"composite": name, "times": times} for name, times in most],
    }


# --- output ------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


def _ci(interval: Interval, digits: int = 2) -> str:
    if interval.low is None or interval.high is None:
        return "n/a"
    return f"[{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _with_ci(interval: Interval) -> str:
    return f"{_num(interval.value)} {_ci(interval)}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 1 else f"{value:.1f}"


def markdown(
    result: Mapping[str, Any], blocks: Sequence[GroundTruthBlock], composites: Sequence[CompositeBlock]
) -> str:
    infos: dict[str, dict[str, Any]] = result["methods"]
    costs: dict[str, float | None] = result["cost_per_arch_s"]
    lines = [
        f"# {result['title']}",
        "",
        f"Re-report of a recorded batch export against a published ground truth; nothing was re-run "
        f"(`python -m bench.published_report {result['argv']}`).",
        "",
        f"- export: `{result['export']}` ({result['n_architectures']} architectures, "
        f"{result['n_evaluations']} evaluations{result['recorded_note']})",
        f"- ground truth: `{result['ground_truth_file']}` column `{result['value_column']}`, joined by "
        f"`{result['key_column']}` through the canonical {result['space']} architecture key: "
        f"{result['n_joined']} of the export's architectures have a published value",
        f"- bootstrap: {result['n_boot']:,} percentile resamples of architectures, "
        f"seed {result['seed']}, 95%; "
        f"Δρ intervals are paired (one resample for both methods); composite halves split with seed "
        f"{result['split_seed']}",
        f"- computed {result['generated_at']} on {result['machine']}",
        "",
    ]
    if result.get("ground_truth_agreement"):
        agreement = result["ground_truth_agreement"]
        lines += [
            "## The two ground truths against each other",
            "",
            f"Spearman ρ of the study's `{agreement['internal']}` run against the published accuracy: "
            f"{_num(agreement['spearman'])} "
            f"{_ci(Interval(agreement['spearman'], agreement['low'], agreement['high']))}"
            f", Kendall τ {_num(agreement['kendall'])}, n = {agreement['n']}.",
            "",
        ]
    header = "| method | preset | cost/arch (s) |"
    rule = "|---|---|---:|"
    for block in blocks:
        header += f" n | ρ vs {block.name} [95% CI] | τ [95% CI] | Δρ vs {block.reference} [95% CI] |"
        rule += "---:|---:|---:|---:|"
    lines += [
        "## Every method against each ground truth",
        "",
        "Scores oriented higher = better; ρ, τ over the architectures with a finite score and ground truth. "
        "Δρ = ρ(method) − ρ(best zero-cost measure against that ground truth).",
        "",
        header,
        rule,
    ]
    by_block = [{f.method: f for f in block.methods} for block in blocks]
    aliases = [a for a in infos if any(a in figures for figures in by_block)]
    for alias in aliases:
        row = f"| {alias} | {infos[alias]['preset']} | {_seconds(costs.get(alias))} |"
        for block, figures in zip(blocks, by_block, strict=True):
            fig = figures.get(alias)
            if fig is None:
                row += " — | — | — | (ground truth) |"
                continue
            delta = "—" if fig.delta_vs_reference.value is None else _with_ci(fig.delta_vs_reference)
            if alias == block.reference:
                delta = "(reference)"
            row += f" {fig.n} | {_with_ci(fig.spearman)} | {_with_ci(fig.kendall)} | {delta} |"
        lines.append(row)
    lines.append("")
    lines += top_percent_lines(blocks)
    for composite in composites:
        lines += composite_lines(composite)
    if result.get("funnel"):
        lines += funnel_lines({"funnel": result["funnel"]})
    lines += [
        "## Rules",
        "",
        "- Composite = mean of per-measure ranks (rank 1 = best, ties averaged); missing values rule "
        f"`{result['composite_rules']['missing']}`, ±inf rule `{result['composite_rules']['infinite']}` "
        "(app/services/reports/composite.py). Candidates: every subset of 1–3 measures of the pool; ties "
        "in selection ρ go to the smaller subset.",
        "- The best zero-cost reference is picked on all architectures against the same ground truth, which "
        "favours it; the composite is picked and judged on disjoint halves.",
        "",
    ]
    return "\n".join(lines)


def top_percent_lines(blocks: Sequence[GroundTruthBlock]) -> list[str]:
    """The FEAR paper's top-% figures (common, spe) per method, one column pair per ground truth."""
    if not blocks or not blocks[0].top_percent:
        return []
    percents = [row["p"] for row in next(iter(blocks[0].top_percent.values()))]
    header = "| method |"
    rule = "|---|"
    for block in blocks:
        for p in percents:
            k = next(iter(block.top_percent.values()))[percents.index(p)]["k"]
            header += f" common@{p:g}% (k={k}) {block.name} |"
            rule += "---:|"
        for p in percents:
            header += f" spe@{p:g}% {block.name} |"
            rule += "---:|"
    lines = [
        "## Does it find the best architectures? (the FEAR paper's top-% figures)",
        "",
        "common@p = share of the ground truth's top k = floor(N·p/100) that the method also puts in its "
        "top k; spe@p = Spearman over the ground truth's top k only. No intervals: at k = 5 or 10 one "
        "architecture moves common by 0.2 or 0.1.",
        "",
        header,
        rule,
    ]
    aliases = list(dict.fromkeys(a for block in blocks for a in block.top_percent))
    for alias in aliases:
        row = f"| {alias} |"
        for block in blocks:
            table = block.top_percent.get(alias)
            for i in range(len(percents)):
                row += f" {_num(table[i]['common'], 2)} |" if table else " — |"
            for i in range(len(percents)):
                row += f" {_num(table[i]['spe'], 2)} |" if table else " — |"
        lines.append(row)
    return [*lines, ""]


def composite_lines(block: CompositeBlock) -> list[str]:
    ev, single = block.evaluation, block.best_single_evaluation
    lines = [
        f"## Composite chosen on one half, judged on the other ({block.ground_truth})",
        "",
        f"Pool: {', '.join(block.measures_pool)}. Selection half n = {block.n_selection}, evaluation half "
        f"n = {block.n_evaluation} (split seed {block.split_seed}).",
        "",
        "| on the evaluation half | selection ρ | n | ρ [95% CI] | τ [95% CI] | cost/arch (s) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| chosen `{block.chosen_name}` | {_num(block.selection_spearman)} | {ev.n} | "
        f"{_with_ci(ev.spearman)} | "
        f"{_with_ci(ev.kendall)} | {_seconds(block.cost_per_arch_s)} |",
        f"| best single measure on the selection half, `{block.best_single}` | "
        f"{_num(block.best_single_selection_spearman)} "
        f"| {single.n} | {_with_ci(single.spearman)} | {_with_ci(single.kendall)} | |",
        "",
        f"Paired Δρ (composite − `{block.best_single}`) on the evaluation half: "
        f"{_with_ci(block.delta_vs_best_single)} (n = {ev.n_delta}).",
        "",
        "Best subsets on the selection half: "
        + "; ".join(f"{'+'.join(c['measures'])} {_num(c['spearman'])}" for c in block.top_candidates)
        + ".",
        "",
    ]
    rep = block.repeats
    if rep.get("n_defined"):
        lines += [
            f"Over {rep['n_defined']} further random halvings (seeds {rep['seeds'][0]}–{rep['seeds'][1]}), "
            f"evaluation-half ρ of the chosen composite: median {_num(rep['composite_eval_rho_median'])} "
            f"(10–90%: {_num(rep['composite_eval_rho_q10_q90'][0])}–"
            f"{_num(rep['composite_eval_rho_q10_q90'][1])}); "
            f"of the single measure chosen the same way: median {_num(rep['single_eval_rho_median'])} "
            f"(10–90%: {_num(rep['single_eval_rho_q10_q90'][0])}–{_num(rep['single_eval_rho_q10_q90'][1])}). "
            f"The composite was better in {rep['share_composite_better']:.0%} of halvings (median Δρ "
            f"{_num(rep['delta_median'])}); a multi-measure composite was chosen in "
            f"{rep['share_multi_measure']:.0%}. Most chosen: "
            + ", ".join(f"`{m['composite']}` ×{m['times']}" for m in rep["most_chosen"])
            + ".",
            "",
        ]
    return lines


# --- command line ------------------------------------------------------------------------------------


def cost_plot(result: Mapping[str, Any]) -> bytes:
    """The service's cost-vs-Spearman plot (Pareto front drawn) against the published ground truth."""
    from app.services.reports.plots import cost_vs_spearman_png

    costs = result["cost_per_arch_s"]
    entries = [
        {
            "label": m["method"],
            "cost_s": costs.get(m["method"]),
            "spearman": m["spearman"]["value"],
            "ci_low": m["spearman"]["low"],
            "ci_high": m["spearman"]["high"],
        }
        for m in result["ground_truths"][0]["methods"]
    ]
    return cost_vs_spearman_png(entries)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.published_report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--export", type=Path, required=True, help="a batch export CSV (bench/results/*/export.csv)"
    )
    parser.add_argument("--ground-truth", type=Path, required=True, help="CSV with a key and a value column")
    parser.add_argument("--key-column", default="nb201_index", help="benchmark index or genotype column")
    parser.add_argument("--value-column", default="cifar10_test_top1_200ep", help="accuracy column")
    parser.add_argument(
        "--ground-truth-name", default="published", help="name for the ground truth in tables"
    )
    parser.add_argument(
        "--internal", default=DEFAULT_INTERNAL, help="the export's in-service ground-truth alias ('' = none)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for published_report.md/.json")
    parser.add_argument("--title", default=None, help="heading of the Markdown (default: from --out)")
    parser.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the composite's selection split")
    parser.add_argument("--split-repeats", type=int, default=100, help="further halvings for stability")
    parser.add_argument(
        "--composite-measures",
        default=None,
        help="comma-separated aliases for the composite pool (default: every zero-cost and static measure)",
    )
    parser.add_argument(
        "--fixed-composite",
        action="append",
        default=[],
        metavar="SPEC",
        help="a composite named in advance (e.g. composite:synflow+naswot+jacob_cov), reported over all "
        "architectures like any method; repeatable",
    )
    parser.add_argument(
        "--funnel",
        action="append",
        default=[],
        metavar="FUNNEL=FULL",
        help="a funnel stage's alias and the same method's alias run on every candidate (e.g. "
        "funnel-fear=fear): its cost saved and top-%% table against the full run; repeatable",
    )
    parser.add_argument("--funnel-measure", default=None, help="the funnel's cheap measure (its cost counts)")
    parser.add_argument("--max-size", type=int, default=3, help="largest composite tried (measures)")
    parser.add_argument("--missing", choices=[r.value for r in MissingRule], default=MissingRule.WORST.value)
    parser.add_argument(
        "--infinite", choices=[r.value for r in InfiniteRule], default=InfiniteRule.ORDER.value
    )
    return parser


def run(args: argparse.Namespace, argv_text: str) -> dict[str, Any]:
    rows = read_export(args.export)
    spaces = sorted({_space_of(args.export)})
    space = spaces[0]
    infos = method_infos(rows)
    scores = oriented_scores(rows, infos)
    costs = mean_costs(rows)
    rules = CompositeRules(missing=MissingRule(args.missing), infinite=InfiniteRule(args.infinite))
    for text in args.fixed_composite:
        add_fixed_composite(text, infos, scores, costs, rules)
    architectures = {row.key for row in rows}
    published_all = read_ground_truth(args.ground_truth, args.key_column, args.value_column, space)
    published = {k: v for k, v in published_all.items() if k in architectures}
    if len(published) < 3:
        raise ValueError(
            f"only {len(published)} of the export's {len(architectures)} architectures are in "
            f"{args.ground_truth}; check --key-column (an index or a genotype column)"
        )
    internal_alias = args.internal or None
    if internal_alias and internal_alias not in infos:
        raise ValueError(
            f"--internal {internal_alias!r}: the export has no such method; it has {', '.join(infos)}"
        )

    blocks = [
        ground_truth_block(
            args.ground_truth_name,
            f"{args.ground_truth.name}: {args.value_column}",
            published,
            scores,
            infos,
            skip=[],
            n_boot=args.n_boot,
            seed=args.seed,
        )
    ]
    truths: list[tuple[str, dict[str, float]]] = [(args.ground_truth_name, published)]
    agreement = None
    if internal_alias:
        internal = dict(scores[internal_alias])
        blocks.append(
            ground_truth_block(
                f"{internal_alias} (in-service)",
                f"the export's {internal_alias} scores",
                internal,
                scores,
                infos,
                skip=[internal_alias],
                n_boot=args.n_boot,
                seed=args.seed,
            )
        )
        truths.append((f"{internal_alias} (in-service)", internal))
        fig = next(f for f in blocks[0].methods if f.method == internal_alias)
        agreement = {
            "internal": internal_alias,
            "spearman": fig.spearman.value,
            "low": fig.spearman.low,
            "high": fig.spearman.high,
            "kendall": fig.kendall.value,
            "n": fig.n,
        }

    if args.composite_measures:
        pool = [a.strip() for a in args.composite_measures.split(",") if a.strip()]
        unknown = [a for a in pool if a not in infos]
        if unknown:
            raise ValueError(f"--composite-measures: no method {', '.join(unknown)} in the export")
    else:
        pool = [a for a, info in infos.items() if info.family in CHEAP_FAMILIES]
    composites = [
        composite_block(
            name,
            truth,
            scores,
            costs,
            pool,
            rules,
            split_seed=args.split_seed,
            repeats=args.split_repeats,
            max_size=args.max_size,
            n_boot=args.n_boot,
            seed=args.seed,
        )
        for name, truth in truths
    ]

    pairs = [tuple(text.split("=", 1)) for text in args.funnel]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("--funnel takes FUNNEL=FULL, e.g. funnel-fear=fear")
    funnel = funnel_section(rows, scores, pairs, args.funnel_measure) if pairs else None  # type: ignore[arg-type]

    recorded = _recorded_note(args.export)
    result: dict[str, Any] = {
        "title": args.title or f"{args.out.name}: the recorded study against the published accuracy",
        "argv": argv_text,
        "export": str(args.export),
        "ground_truth_file": str(args.ground_truth),
        "key_column": args.key_column,
        "value_column": args.value_column,
        "space": space,
        "n_architectures": len(architectures),
        "n_evaluations": len(rows),
        "n_joined": len(published),
        "recorded_note": recorded,
        "n_boot": args.n_boot,
        "seed": args.seed,
        "split_seed": args.split_seed,
        "composite_rules": {"missing": rules.missing.value, "infinite": rules.infinite.value},
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPU cores, {platform.system().lower()}, "
        f"Python {platform.python_version()}",
        "methods": {alias: asdict(info) for alias, info in infos.items()},
        "cost_per_arch_s": costs,
        "ground_truth_agreement": agreement,
        "ground_truths": [asdict(b) for b in blocks],
        "composites": [asdict(c) for c in composites],
        "funnel": funnel,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "published_report.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "published_cost_vs_spearman.png").write_bytes(cost_plot(result))
    (args.out / "published_report.md").write_text(markdown(result, blocks, composites) + "\n")
    return result


def _space_of(export: Path) -> str:
    with export.open(newline="") as handle:
        first = next(csv.DictReader(handle), None)
    return (first or {}).get("space") or "nb201"


def _recorded_note(export: Path) -> str:
    """What run.json beside the export says about the recorded run (machine, wall time)."""
    run_file = export.parent / "run.json"
    if not run_file.exists():
        return ""
    recorded = json.loads(run_file.read_text())
    parts = [f"recorded {recorded['finished_at']}" if recorded.get("finished_at") else ""]
    if recorded.get("machine"):
        parts.append(f"on {recorded['machine']}")
    if recorded.get("torch_threads"):
        parts.append(f"{recorded['torch_threads']} torch thread per worker")
    completion = export.parent / "completion.json"
    if completion.exists():
        for done in json.loads(completion.read_text()):
            replaced = ", ".join(f"{n} {alias}" for alias, n in done["replaced_rows"].items())
            parts.append(f"completed {done['finished_at']} by bench/complete_run.py ({replaced} rows)")
    text = ", ".join(p for p in parts if p)
    return f"; {text}" if text else ""


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    try:
        result = run(args, " ".join(raw))
    except (ValueError, OSError) as error:
        print(f"published_report: {error}", file=sys.stderr)
        return 2
    print((args.out / "published_report.md").read_text())
    print(
        f"wrote {args.out}/published_report.md and .json ({result['n_joined']} architectures)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
