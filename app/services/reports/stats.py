"""Correlation report: Spearman/Kendall, the FEAR paper's top-% table, method matrix, costs, bootstrap.

Pure functions over plain Python values; every number returned is a finite ``float``/``int`` or ``None``
(never NaN), so results go straight into JSON. Rules chosen where reports.md leaves room are listed in
docs/reports.md; the important ones are repeated next to the code that applies them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from typing import Any, TypedDict

import numpy as np
from scipy import stats as scipy_stats

from app.lifecycle import PENDING as PENDING_STATUSES
from app.services.reports.ranking import score_is_usable

DEFAULT_PERCENTS: tuple[float, ...] = (10, 20, 30, 40, 50, 100)
MIN_PAIRS = 3  # below this a rank correlation says nothing (and scipy's p-values are undefined)


class EvaluationRow(TypedDict):
    """One evaluation of one architecture by one method, as the report needs it."""

    key: str  # architecture key (unique per space)
    score: float | None  # raw stored score; None when the evaluation produced none
    finite: bool  # the worker's finite flag
    status: str  # done | unmet | rejected | failed | lost | queued | running
    cost_s: float | None  # wall seconds the evaluation cost (unmet/rejected ones have a cost too)


# ground truth: architecture key -> accuracy (higher is better); None/NaN entries are ignored
GroundTruth = Mapping[str, float | None]


def finite_or_none(value: Any) -> float | None:
    """A plain float when ``value`` is a finite number, else None (the JSON-safe form)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _floor_share(n: int, percent: float) -> int:
    """floor(n · p / 100) in exact arithmetic, so p = 10 of n = 30 is 3, never 2.9999…."""
    return math.floor(n * Fraction(str(percent)) / 100)


def correlation(xs: Sequence[float | None], ys: Sequence[float | None]) -> dict[str, Any]:
    """Signed Spearman ρ and Kendall τ-b (scipy) over the pairs where both values are finite.

    Returns spearman, spearman_p, kendall, kendall_p, n_used, n_nonfinite (pairs dropped for NaN/±inf),
    n_missing (pairs dropped for None) and note. With fewer than 3 usable pairs, or a constant side,
    the statistics are None and ``note`` says why.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} vs {len(ys)})")
    missing = np.array([x is None or y is None for x, y in zip(xs, ys, strict=True)], dtype=bool)
    # dtype=float turns None into NaN; `missing` keeps the two kinds of dropped pair apart.
    x = np.asarray(xs, dtype=np.float64).reshape(-1)
    y = np.asarray(ys, dtype=np.float64).reshape(-1)
    usable = np.isfinite(x) & np.isfinite(y)
    result: dict[str, Any] = {
        "spearman": None,
        "spearman_p": None,
        "kendall": None,
        "kendall_p": None,
        "n_used": int(usable.sum()),
        "n_nonfinite": int((~usable & ~missing).sum()),
        "n_missing": int(missing.sum()),
        "note": None,
    }
    x, y = x[usable], y[usable]
    if x.size < MIN_PAIRS:
        result["note"] = f"fewer than {MIN_PAIRS} pairs with finite values ({x.size}); no correlation"
        return result
    constant = [name for name, values in (("ground truth/x", x), ("score/y", y)) if np.ptp(values) == 0]
    if constant:
        result["note"] = f"constant input ({', '.join(constant)}); correlation undefined"
        return result
    spearman = scipy_stats.spearmanr(x, y)
    kendall = scipy_stats.kendalltau(x, y)
    result["spearman"] = finite_or_none(spearman.statistic)
    result["spearman_p"] = finite_or_none(spearman.pvalue)
    result["kendall"] = finite_or_none(kendall.statistic)
    result["kendall_p"] = finite_or_none(kendall.pvalue)
    return result


def _expected_common(method_order: list[tuple[float, Hashable]], gt_top: set[Hashable], k: int) -> float:
    """|GT top-k ∩ method top-k| with ties in the method's score handled by expectation.

    When a group of equal scores straddles the k-th place, which of them "make" the top-k is arbitrary;
    taking each with equal probability gives the expected overlap (the same idea as average ranks), so
    the result does not depend on row order. Matters for coarse scores such as params or flops.
    """
    slots = k
    common = 0.0
    start = 0
    while start < len(method_order) and slots > 0:
        end = start
        while end < len(method_order) and method_order[end][0] == method_order[start][0]:
            end += 1
        group = method_order[start:end]
        hits = sum(1 for _, key in group if key in gt_top)
        if len(group) <= slots:
            common += hits
            slots -= len(group)
        else:
            common += slots * hits / len(group)
            slots = 0
        start = end
    return common


def top_percent_table(
    gt: Mapping[Hashable, float | None],
    scores: Mapping[Hashable, float | None],
    costs: Mapping[Hashable, float | None],
    percents: Sequence[float] = DEFAULT_PERCENTS,
    higher_is_better: bool = True,
) -> list[dict[str, Any]]:
    """The FEAR paper's table: for each p, k = floor(N·p/100) over the N architectures with ground truth.

    - spe: Spearman(ground truth, score) over the ground-truth top-k, pairs with a finite score only;
    - common: |GT top-k ∩ method top-k| / k; the method's top-k is drawn from the N architectures, and
      only finite scores can enter it (NaN, ±inf, unmet, missing never do, so they count as misses);
    - duration_mean_s / duration_std_s: mean and population std (ddof 0) of the finite costs of the
      ground-truth top-k.
    Ground-truth ties at the k-th place are broken by key (deterministic); method ties by expectation.
    """
    for percent in percents:
        if not 0 < percent <= 100:
            raise ValueError(f"percent must lie in (0, 100], got {percent}")
    truth: dict[Hashable, float] = {
        key: float(value)
        for key, value in gt.items()
        if value is not None and finite_or_none(value) is not None
    }
    gt_order = sorted(truth, key=lambda key: (-float(truth[key]), str(key)))
    sign = 1.0 if higher_is_better else -1.0
    method_scores = {key: finite_or_none(scores.get(key)) for key in truth}
    method_order = sorted(
        ((sign * score, key) for key, score in method_scores.items() if score is not None),
        key=lambda item: (-item[0], str(item[1])),
    )
    n = len(gt_order)
    table = []
    for percent in percents:
        k = _floor_share(n, percent)
        row: dict[str, Any] = {
            "p": percent,
            "k": k,
            "spe": None,
            "common": None,
            "duration_mean_s": None,
            "duration_std_s": None,
            "n_spe": 0,
            "n_duration": 0,
            "note": None,
        }
        table.append(row)
        if k == 0:
            row["note"] = f"k = floor({n}·{percent}/100) = 0; nothing to compare"
            continue
        if not method_order:
            # nothing computed yet (or nothing finite): "0 in common" would read as a final result
            row["note"] = "no finite score yet; nothing to compare"
            continue
        top = gt_order[:k]
        spe = correlation([truth[key] for key in top], [method_scores[key] for key in top])
        row["spe"], row["n_spe"], row["note"] = spe["spearman"], spe["n_used"], spe["note"]
        row["common"] = _expected_common(method_order, set(top), k) / k
        top_costs = [c for c in (finite_or_none(costs.get(key)) for key in top) if c is not None]
        row["n_duration"] = len(top_costs)
        if top_costs:
            row["duration_mean_s"] = float(np.mean(top_costs))
            row["duration_std_s"] = float(np.std(top_costs))
    return table


def method_matrix(scores_by_method: Mapping[str, Mapping[Hashable, float | None]]) -> dict[str, Any]:
    """Spearman between every two methods over the architectures both scored finitely (None if < 3)."""
    names = list(scores_by_method)
    matrix: dict[str, dict[str, float | None]] = {name: {} for name in names}
    for i, first in enumerate(names):
        for second in names[i:]:
            a, b = scores_by_method[first], scores_by_method[second]
            shared = [key for key in a if key in b]
            rho = correlation([a[key] for key in shared], [b[key] for key in shared])["spearman"]
            matrix[first][second] = matrix[second][first] = rho
    return matrix


def cost_summary(
    costs_by_method: Mapping[str, Sequence[float | None]], reference: str = "fear"
) -> dict[str, dict[str, Any]]:
    """Per method: n (finite costs), n_missing, mean_s, total_s and ratio_to_reference.

    The ratio compares mean cost per architecture (not totals), so methods that evaluated different
    numbers of architectures still compare fairly; it is None when the reference has no cost.
    """
    summary: dict[str, dict[str, Any]] = {}
    for name, raw in costs_by_method.items():
        values = [c for c in (finite_or_none(v) for v in raw) if c is not None]
        summary[name] = {
            "n": len(values),
            "n_missing": len(raw) - len(values),
            "mean_s": float(np.mean(values)) if values else None,
            "total_s": float(np.sum(values)) if values else None,
            "ratio_to_reference": None,
        }
    reference_mean = summary.get(reference, {}).get("mean_s")
    if reference_mean:  # None or 0 s: no meaningful ratio
        for entry in summary.values():
            if entry["mean_s"] is not None:
                entry["ratio_to_reference"] = entry["mean_s"] / reference_mean
    return summary


class _TieGroups:
    """One variable sorted once: its tie groups, reused by every bootstrap resample."""

    def __init__(self, values: np.ndarray) -> None:
        self.order = np.argsort(values, kind="stable")
        ordered = values[self.order]
        new_group = np.ones(values.size, dtype=bool)
        new_group[1:] = ordered[1:] != ordered[:-1]
        self.starts = np.flatnonzero(new_group)
        # group index of every element, in the element's original position
        self.group_of = np.empty(values.size, dtype=np.intp)
        self.group_of[self.order] = np.cumsum(new_group) - 1

    def resample_ranks(self, counts: np.ndarray) -> np.ndarray:
        """Average rank (1-based) of each element inside each resample, given how often it was drawn.

        A resample with element i drawn c_i times ranks like the multiset it is: a tie group holding m
        draws after b smaller draws has rank b + (m + 1) / 2. Cumulative sums over the presorted groups
        give that for all resamples at once, with no sort per resample.
        """
        drawn = np.add.reduceat(counts[:, self.order], self.starts, axis=1)
        below = np.cumsum(drawn, axis=1) - drawn
        return (below + (drawn + 1.0) / 2.0)[:, self.group_of]


def _resample_spearman(groups_x: _TieGroups, groups_y: _TieGroups, counts: np.ndarray) -> np.ndarray:
    """Spearman ρ per resample = Pearson of average ranks, each element weighted by its draw count."""
    n = counts.sum(axis=1, keepdims=True)
    centre = (n + 1.0) / 2.0  # the mean of average ranks 1..n never depends on the ties
    rx = groups_x.resample_ranks(counts) - centre
    ry = groups_y.resample_ranks(counts) - centre
    covariance = (counts * rx * ry).sum(axis=1)
    spread = np.sqrt((counts * rx * rx).sum(axis=1) * (counts * ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        # a resample whose ranks are constant on one side has no ρ: 0/0 gives NaN, dropped later
        return covariance / spread


def bootstrap_ci(
    xs: Sequence[float | None],
    ys: Sequence[float | None],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap interval for Spearman ρ over the finite pairs (resampling pairs).

    Each variable is sorted once; a resample is then a row of draw counts and its ranks come from
    cumulative sums (whole-array numpy work, chunked to bound memory). Resamples whose ranks are
    constant (possible for tiny n) have no ρ and are dropped; ``n_valid`` says how many remained, and
    fewer than half gives no interval.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 0:
        raise ValueError(f"n_boot must not be negative, got {n_boot}")
    x = np.asarray(xs, dtype=np.float64).reshape(-1)
    y = np.asarray(ys, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"xs and ys differ in length ({x.size} vs {y.size})")
    usable = np.isfinite(x) & np.isfinite(y)
    x, y = x[usable], y[usable]
    result: dict[str, Any] = {
        "low": None,
        "high": None,
        "level": level,
        "n_boot": n_boot,
        "n_valid": 0,
        "method": "percentile",
        "note": None,
    }
    n = x.size
    if n_boot == 0:  # the API's bootstrap=0: the client asked for no interval
        result["note"] = "no bootstrap requested (bootstrap=0); no interval"
        return result
    if n < MIN_PAIRS:
        result["note"] = f"fewer than {MIN_PAIRS} pairs with finite values ({n}); no interval"
        return result
    rng = np.random.default_rng(seed)
    groups_x, groups_y = _TieGroups(x), _TieGroups(y)
    chunk = max(1, 1_000_000 // n)  # ~8 MB per float array per chunk
    rhos = []
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        picks = rng.integers(0, n, size=(rows, n))
        # draw counts per row in one bincount: offset each row's picks into its own block of n bins
        offsets = (np.arange(rows) * n)[:, None]
        counts = np.bincount((picks + offsets).ravel(), minlength=rows * n).reshape(rows, n)
        rhos.append(_resample_spearman(groups_x, groups_y, counts.astype(np.float64)))
    all_rhos = np.concatenate(rhos)
    valid = all_rhos[np.isfinite(all_rhos)]
    result["n_valid"] = int(valid.size)
    if valid.size * 2 < n_boot:
        result["note"] = f"only {valid.size} of {n_boot} resamples had a defined ρ; no interval"
        return result
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(valid, [tail, 1.0 - tail])
    result["low"], result["high"] = float(low), float(high)
    return result


def _unique_rows(rows: Sequence[EvaluationRow]) -> tuple[dict[str, EvaluationRow], int]:
    """Rows by key, first occurrence kept (a batch may list one architecture under two labels)."""
    by_key: dict[str, EvaluationRow] = {}
    for row in rows:
        by_key.setdefault(row["key"], row)
    return by_key, len(rows) - len(by_key)


def _status_counts(rows: Sequence[EvaluationRow]) -> dict[str, int]:
    counts = {
        "n_nonfinite": 0,
        "n_unmet": 0,
        "n_rejected": 0,
        "n_failed": 0,
        "n_lost": 0,
        "n_pending": 0,
        "n_filtered": 0,  # not kept by a funnel: the method never ran on it
        "n_other": 0,
    }
    for row in rows:
        status = row["status"]
        if status == "done":
            if not score_is_usable(row):
                counts["n_nonfinite"] += 1
        elif status in PENDING_STATUSES:
            counts["n_pending"] += 1
        elif f"n_{status}" in counts:
            counts[f"n_{status}"] += 1
        else:
            counts["n_other"] += 1
    return counts


def build_report(
    rows_by_method: Mapping[str, Sequence[EvaluationRow]],
    ground_truth: GroundTruth,
    *,
    higher_is_better: Mapping[str, bool] | None = None,
    percents: Sequence[float] = DEFAULT_PERCENTS,
    reference: str = "fear",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    ground_truth_name: str | None = None,
) -> dict[str, Any]:
    """The whole correlation report of one batch against one ground-truth set.

    Scores are oriented so that higher is better before any statistic (a method declared lower-is-better
    is negated), so ρ > 0 always means "ranks like the ground truth". Status counts are taken over the
    architectures that have a finite ground truth and partition them together with n_used and n_missing.
    """
    direction = dict(higher_is_better or {})
    truth: dict[Hashable, float | None] = {
        key: float(v) for key, v in ground_truth.items() if v is not None and finite_or_none(v) is not None
    }
    methods: dict[str, Any] = {}
    oriented_by_method: dict[str, Mapping[Hashable, float | None]] = {}
    costs_by_method: dict[str, list[float | None]] = {}
    for name, raw_rows in rows_by_method.items():
        by_key, n_duplicates = _unique_rows(raw_rows)
        sign = 1.0 if direction.get(name, True) else -1.0
        oriented: dict[Hashable, float | None] = {
            key: sign * float(row["score"] or 0.0) for key, row in by_key.items() if score_is_usable(row)
        }
        oriented_by_method[name] = oriented
        costs_by_method[name] = [row["cost_s"] for row in by_key.values()]

        with_truth = [row for key, row in by_key.items() if key in truth]
        used_keys = [key for key in truth if key in oriented]
        gt_values = [truth[key] for key in used_keys]
        score_values = [oriented[key] for key in used_keys]
        corr = correlation(gt_values, score_values)
        entry: dict[str, Any] = {
            "method": name,
            "higher_is_better": sign > 0,
            "spearman": corr["spearman"],
            "spearman_p": corr["spearman_p"],
            "kendall": corr["kendall"],
            "kendall_p": corr["kendall_p"],
            "n_used": corr["n_used"],
            **_status_counts(with_truth),
            "n_missing": sum(1 for key in truth if key not in by_key),
            "n_without_ground_truth": len(by_key) - len(with_truth),
            "n_duplicate_rows": n_duplicates,
            "note": corr["note"],
            "spearman_ci": bootstrap_ci(gt_values, score_values, n_boot=n_boot, seed=seed, level=level),
            "top_percent": top_percent_table(
                truth, oriented, {key: row["cost_s"] for key, row in by_key.items()}, percents
            ),
        }
        methods[name] = entry
    return {
        "ground_truth": {
            "name": ground_truth_name,
            "n": len(truth),
            "n_ignored": len(ground_truth) - len(truth),
        },
        "percents": list(percents),
        "reference": reference,
        "methods": methods,
        "matrix": method_matrix(oriented_by_method),
        "costs": cost_summary(costs_by_method, reference=reference),
    }
