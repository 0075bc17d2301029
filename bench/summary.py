"""The run's summary.md: ground-truth sanity, the seed-style correlation table, the top-% table and
costs, built from what the API returned (report JSON and export rows). No torch, no database.

Two numbers are computed here rather than read from the report:
- the ground truth's own spread (the report gives correlations, not the accuracies themselves);
- a paired bootstrap interval for ρ(method) − ρ(FEAR): the architectures are resampled once for both
  methods, so the interval answers "is this difference real?" more sharply than two separate CIs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

# A ground truth whose best architecture is within this many points of chance, or whose accuracies
# spread (std) less than this, cannot order architectures: every correlation against it is noise.
NEAR_CHANCE_POINTS = 5.0
MIN_SPREAD_POINTS = 1.0
MIN_GROUND_TRUTH = 5


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def scores_by_method(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """alias → architecture key → score, for done evaluations with a finite score (first row per key)."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.get("status") != "done" or not finite(row.get("score")):
            continue
        out.setdefault(str(row["method"]), {}).setdefault(str(row["architecture_key"]), float(row["score"]))
    return out


def ground_truth_percent(rows: Sequence[Mapping[str, Any]], alias: str) -> dict[str, float]:
    """The ``full`` method's test accuracies in percent (its score is a fraction 0..1)."""
    return {key: 100.0 * value for key, value in scores_by_method(rows).get(alias, {}).items()}


def ground_truth_sanity(values: Sequence[float], num_classes: int) -> dict[str, Any]:
    """Range and spread of the ground truth against chance, and the problems that make it useless."""
    chance = 100.0 / num_classes
    arr = np.asarray([v for v in values if finite(v)], dtype=np.float64)
    result: dict[str, Any] = {
        "n": int(arr.size),
        "chance": chance,
        "num_classes": num_classes,
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "distinct": int(np.unique(arr).size),
        "problems": [],
    }
    problems: list[str] = result["problems"]
    if arr.size:
        result.update(
            min=float(arr.min()), max=float(arr.max()), mean=float(arr.mean()), std=float(arr.std())
        )
    if arr.size < MIN_GROUND_TRUTH:
        problems.append(
            f"only {arr.size} architectures have a ground-truth accuracy (need >= {MIN_GROUND_TRUTH})"
        )
    if arr.size and result["max"] - chance < NEAR_CHANCE_POINTS:
        problems.append(
            f"the best ground-truth accuracy {result['max']:.1f}% is within "
            f"{NEAR_CHANCE_POINTS:.0f} points of "
            f"chance ({chance:.1f}%): the networks learned nothing that generalises"
        )
    if arr.size >= 2 and result["std"] < MIN_SPREAD_POINTS:
        problems.append(
            f"the ground-truth accuracies spread only {result['std']:.2f} points "
            f"(std < {MIN_SPREAD_POINTS:.0f}): "
            "they cannot order the architectures"
        )
    if arr.size > 0 and result["distinct"] < min(3, arr.size):
        problems.append(f"only {result['distinct']} distinct ground-truth values")
    result["ok"] = not problems
    return result


def _rowwise_spearman(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Spearman ρ of every row pair (average ranks for ties); NaN where a row is constant."""
    rx = rankdata(truth, axis=1)
    ry = rankdata(scores, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))


def paired_spearman_difference(
    truth: Mapping[str, float],
    method: Mapping[str, float],
    reference: Mapping[str, float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """ρ(truth, method) − ρ(truth, reference) over the architectures all three cover, with a
    percentile bootstrap interval from resampling those architectures (the same draw for both)."""
    keys = sorted(k for k in truth if k in method and k in reference)
    result: dict[str, Any] = {"n": len(keys), "delta": None, "low": None, "high": None}
    if len(keys) < 3:
        return result
    t = np.array([truth[k] for k in keys])
    a = np.array([method[k] for k in keys])
    b = np.array([reference[k] for k in keys])
    point = _rowwise_spearman(t[None], a[None])[0] - _rowwise_spearman(t[None], b[None])[0]
    if not math.isfinite(point):
        return result
    result["delta"] = float(point)
    picks = _resamples(len(keys), n_boot, seed)
    deltas = _rowwise_spearman(t[picks], a[picks]) - _rowwise_spearman(t[picks], b[picks])
    result.update(_percentile_interval(deltas, n_boot, level))
    return result


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` bootstrap draws of ``n`` indices (one row per draw)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentile_interval(draws: np.ndarray, n_boot: int, level: float) -> dict[str, float]:
    """{"low", "high"} of the finite draws; empty when fewer than half of them are finite."""
    draws = draws[np.isfinite(draws)]
    if draws.size * 2 < n_boot:
        return {}
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return {"low": float(low), "high": float(high)}


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if finite(value) else "n/a"


def _seconds(value: Any) -> str:
    if not finite(value):
        return "n/a"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _ci(ci: Mapping[str, Any] | None) -> str:
    if not ci or not finite(ci.get("low")) or not finite(ci.get("high")):
        return "n/a"
    return f"[{ci['low']:.2f}, {ci['high']:.2f}]"


def sanity_lines(sanity: Mapping[str, Any], ground_truth_name: str) -> list[str]:
    lines = [
        "## Ground-truth sanity",
        "",
        f"Ground truth: `{ground_truth_name}` (test accuracy in percent), {sanity['n']} architectures, "
        f"{sanity['num_classes']} classes, chance {sanity['chance']:.1f}%.",
        "",
        "| min | max | mean | std (spread) | best − chance | distinct values |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {_num(sanity['min'], 2)} | {_num(sanity['max'], 2)} | {_num(sanity['mean'], 2)} | "
        f"{_num(sanity['std'], 2)} | "
        f"{_num(sanity['max'] - sanity['chance'] if finite(sanity['max']) else None, 2)} | "
        f"{sanity['distinct']} |",
        "",
    ]
    if sanity["ok"]:
        lines.append("The ground truth is usable: its best architecture is well above chance and it spreads.")
    else:
        lines.append(
            "> **WARNING: this ground truth cannot rank anything; every correlation below is noise.**"
        )
        lines += [f"> - {p}" for p in sanity["problems"]]
    return [*lines, ""]


def failure_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Methods with failed or lost evaluations, with the first error of each."""
    trouble: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("status") in ("failed", "lost"):
            entry = trouble.setdefault(str(row["method"]), {"n": 0, "error": row.get("error")})
            entry["n"] += 1
    if not trouble:
        return []
    lines = ["## Failed evaluations", "", "| method | failed/lost | first error |", "|---|---:|---|"]
    for alias, entry in trouble.items():
        error = str(entry["error"] or "").replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(f"| {alias} | {entry['n']} | {error} |")
    return [*lines, ""]


def correlation_lines(
    report: Mapping[str, Any],
    deltas: Mapping[str, Mapping[str, Any]],
    presets: Mapping[str, str | None],
    reference: str,
    title: str = "## Ranking quality (the seed's table)",
) -> list[str]:
    costs = report.get("costs", {})
    gt_name = report.get("ground_truth", {}).get("name")
    lines = [
        title,
        "",
        f"Ground truth of this table: `{gt_name}`. " if gt_name else "",
        "Spearman ρ and Kendall τ against that ground truth; 95% percentile bootstrap CI of ρ; "
        "Δρ = ρ(method) − "
        f"ρ({reference}) with a paired bootstrap CI over the same architectures (an interval that excludes 0 "
        "means the difference is real at this n). Undefined values (constant scores, < 3 usable pairs) "
        "show n/a.",
        "",
        f"| method | preset | Spearman ρ | 95% CI | Kendall τ | n used | unmet | rejected | failed | "
        f"mean cost/arch (s) | Δρ vs {reference} [95% CI] |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for alias, m in report["methods"].items():
        delta = deltas.get(alias, {})
        delta_text = (
            "—"
            if alias == reference
            else (f"{_num(delta.get('delta'), 2)} {_ci(delta)}" if finite(delta.get("delta")) else "n/a")
        )
        lines.append(
            f"| {alias} | {presets.get(alias) or ''} | {_num(m.get('spearman'))} | "
            f"{_ci(m.get('spearman_ci'))} | {_num(m.get('kendall'))} | {m.get('n_used', 0)} | "
            f"{m.get('n_unmet', 0)} | {m.get('n_rejected', 0)} | "
            f"{m.get('n_failed', 0) + m.get('n_lost', 0)} | {_seconds(costs.get(alias, {}).get('mean_s'))} | "
            f"{delta_text} |"
        )
    return [*lines, ""]


def top_percent_lines(report: Mapping[str, Any], alias: str) -> list[str]:
    method = report["methods"].get(alias)
    if method is None:
        return []
    lines = [
        f"## Top-% table for {alias}",
        "",
        "Architectures sorted by ground truth; k = floor(N·p/100). spe = Spearman over the "
        "ground-truth top-k; common = share of the ground-truth top-k that the method also puts in "
        "its top-k; duration = mean ± std "
        "cost of the ground-truth top-k.",
        "",
        "| p (%) | k | spe | common | duration (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in method.get("top_percent", []):
        duration = (
            f"{_seconds(row.get('duration_mean_s'))} ± {_seconds(row.get('duration_std_s'))}"
            if finite(row.get("duration_mean_s"))
            else "n/a"
        )
        lines.append(
            f"| {row['p']:g} | {row['k']} | {_num(row.get('spe'), 2)} | {_num(row.get('common'), 2)} | "
            f"{duration} |"
        )
    return [*lines, ""]


def cost_lines(
    report: Mapping[str, Any], ground_truth_cost: Mapping[str, Any] | None, reference: str
) -> list[str]:
    lines = [
        "## Cost per method",
        "",
        "Seconds of evaluation (training or measure time as the worker recorded it, unmet/rejected "
        "included); "
        f"ratio = mean cost per architecture relative to {reference}.",
        "",
        f"| method | n | mean (s) | total (s) | ratio to {reference} |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = dict(report.get("costs", {}))
    if ground_truth_cost:
        rows = {**rows, **ground_truth_cost}
    for alias, c in rows.items():
        ratio = c.get("ratio_to_reference")
        lines.append(
            f"| {alias} | {c.get('n', 0)} | {_seconds(c.get('mean_s'))} | {_seconds(c.get('total_s'))} | "
            f"{_num(ratio, 2) + 'x' if finite(ratio) else 'n/a'} |"
        )
    return [*lines, ""]


def ground_truth_cost(
    rows: Sequence[Mapping[str, Any]], alias: str, reference_mean: float | None
) -> dict[str, Any]:
    """The ground truth's own cost row (the report leaves the ground-truth method out)."""
    costs = [float(r["cost_s"]) for r in rows if r.get("method") == alias and finite(r.get("cost_s"))]
    mean = float(np.mean(costs)) if costs else None
    return {
        f"{alias} (ground truth)": {
            "n": len(costs),
            "mean_s": mean,
            "total_s": float(np.sum(costs)) if costs else None,
            "ratio_to_reference": mean / reference_mean if mean is not None and reference_mean else None,
        }
    }


def spearman_with_ci(
    truth: Mapping[str, float], scores: Mapping[str, float], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """ρ over the architectures both cover, with a 95% percentile bootstrap interval."""
    keys = sorted(k for k in truth if k in scores)
    result: dict[str, Any] = {"n": len(keys), "rho": None, "low": None, "high": None}
    if len(keys) < 3:
        return result
    t = np.array([truth[k] for k in keys])
    s = np.array([scores[k] for k in keys])
    rho = _rowwise_spearman(t[None], s[None])[0]
    if not math.isfinite(rho):
        return result
    result["rho"] = float(rho)
    if n_boot <= 0:
        return result
    picks = _resamples(len(keys), n_boot, seed)
    result.update(_percentile_interval(_rowwise_spearman(t[picks], s[picks]), n_boot, 0.95))
    return result


# What FEAR's stored stage-1 record says on its own (higher = better in every column), so the paper's
# "weak architectures are slow to train" can be checked without running anything else.
_STAGE1_SCORES: dict[str, tuple[str, Any]] = {
    "−time to threshold (s)": ("time_to_threshold_s", lambda info: -float(info["time_to_threshold_s"])),
    "−stage-1 epochs": (
        "stage1_epochs",
        # Fractional when the threshold was checked between epoch ends (threshold_check_steps).
        lambda info: -float(info.get("stage1_epochs_exact", info["stage1_epochs"])),
    ),
}


def stage1_lines(rows: Sequence[Mapping[str, Any]], truth: Mapping[str, float], alias: str) -> list[str]:
    """Spearman ρ of FEAR's stage-1 speed against the ground truth, beside FEAR's own score."""
    derived: dict[str, dict[str, float]] = {name: {} for name in _STAGE1_SCORES}
    for row in rows:
        info = row.get("info") or {}
        if row.get("method") != alias or row.get("status") != "done":
            continue
        for name, (needed, score) in _STAGE1_SCORES.items():
            if finite(info.get(needed)):
                derived[name].setdefault(str(row["architecture_key"]), score(info))
    if not any(derived.values()):
        return []
    lines = [
        f"## {alias}'s stage 1 as a score",
        "",
        "The paper's premise is that weak architectures are slow to reach the threshold. Spearman ρ of "
        "the stage-1 speed alone against the ground truth (done evaluations; time is wall time, so it "
        "also carries the machine's noise; epochs tie heavily):",
        "",
        "| score | n | Spearman ρ | 95% CI |",
        "|---|---:|---:|---:|",
    ]
    for name, scores in derived.items():
        r = spearman_with_ci(truth, scores)
        lines.append(f"| {name} | {r['n']} | {_num(r['rho'])} | {_ci(r)} |")
    return [*lines, "", *_epoch_group_lines(rows, truth, alias)]


def _epoch_group_lines(
    rows: Sequence[Mapping[str, Any]], truth: Mapping[str, float], alias: str
) -> list[str]:
    """FEAR's score per stage-1 length: the threshold is checked at epoch ends, so when it is reached
    within a few epochs the stage-2 score also measures how much training each network got."""
    groups: dict[int, dict[str, float]] = {}
    for row in rows:
        info = row.get("info") or {}
        key = str(row.get("architecture_key"))
        usable = row.get("method") == alias and row.get("status") == "done" and finite(row.get("score"))
        if usable and finite(info.get("stage1_epochs")) and key in truth:
            groups.setdefault(int(info["stage1_epochs"]), {})[key] = float(row["score"])
    if len(groups) < 2:
        return []
    lines = [
        f"{alias}'s score by stage-1 length (within a group every network had the same training "
        "before stage 2):",
        "",
        "| stage-1 epochs | n | mean ground truth (%) | mean score | Spearman ρ within the group |",
        "|---:|---:|---:|---:|---:|",
    ]
    for epochs in sorted(groups):
        scores = groups[epochs]
        r = spearman_with_ci(truth, scores, n_boot=0)
        lines.append(
            f"| {epochs} | {len(scores)} | {np.mean([truth[k] for k in scores]):.2f} | "
            f"{np.mean(list(scores.values())):.4f} | {_num(r['rho'], 2)} |"
        )
    return [*lines, ""]


def published_lines(
    report: Mapping[str, Any],
    deltas: Mapping[str, Mapping[str, Any]],
    presets: Mapping[str, str | None],
    reference: str,
    sanity: Mapping[str, Any],
    name: str,
    in_service: str,
) -> list[str]:
    """The section of every method against a published ground truth, beside the in-service one."""
    lines = [
        f"## Against the published ground truth `{name}`",
        "",
        f"The tables above use the in-service ground truth `{in_service}`; this section uses the published "
        f"accuracies `{name}` uploaded to the batch (PUT /v1/batches/{{id}}/ground_truth/{name}). "
        f"`{in_service.removeprefix('method:')}` itself appears here as a method.",
        "",
    ]
    sane = sanity_lines(sanity, name)
    lines += [line.replace("## Ground-truth sanity", f"### Sanity of `{name}`") for line in sane]
    lines += correlation_lines(
        report, deltas, presets, reference, title=f"### Ranking quality against `{name}`"
    )
    lines += [
        line.replace("## Top-% table for", "### Top-% table against the published ground truth for")
        for line in top_percent_lines(report, reference)
    ]
    return lines


def funnel_lines(report: Mapping[str, Any]) -> list[str]:
    """The funnel section: what it kept, spent and saved, and its top-% table against the method run
    on every candidate (when the report had a reference batch)."""
    funnel = report.get("funnel") or {}
    lines = [
        f"## Funnel: {funnel.get('rule', '')}",
        "",
        f"{funnel.get('n_kept', 0)} of {funnel.get('n_candidates', 0)} candidates kept. Cost = the measure's "
        "evaluations on every candidate plus the expensive method on the kept ones, against the expensive "
        "method's measured mean cost times every candidate.",
        "",
        "| method | cheap (s) | expensive on kept (s) | funnel total (s) | est. expensive on all (s) "
        "| saved (s) | cost ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for alias, m in (funnel.get("methods") or {}).items():
        lines.append(
            f"| {alias} | {_seconds(m.get('cheap_cost_s'))} | {_seconds(m.get('expensive_cost_s'))} | "
            f"{_seconds(m.get('funnel_cost_s'))} | {_seconds(m.get('estimated_expensive_all_s'))} | "
            f"{_seconds(m.get('saved_s'))} | {_num(m.get('cost_ratio'), 2)} |"
        )
    lines.append("")
    for alias, m in (funnel.get("methods") or {}).items():
        ref = m.get("vs_reference")
        if not ref:
            continue
        lines += [
            f"### {alias} against `{ref['method']}` on every candidate (top-% table)",
            "",
            "| p | k | common | spe |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['p']:g} | {row['k']} | {_num(row.get('common'), 2)} | {_num(row.get('spe'), 2)} |"
            for row in ref["top_percent"]
        ]
        lines.append("")
    return lines
