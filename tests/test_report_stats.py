"""Rankings and report statistics against values worked out by hand on small fixed data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from app.services.reports import (
    bootstrap_ci,
    build_report,
    correlation,
    cost_summary,
    method_matrix,
    rank_rows,
    report_markdown,
    top_percent_table,
)

NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------- ranking


def _row(label, score, status="done", finite=None, **extra):
    if finite is None:
        finite = score is not None and math.isfinite(score)
    return {"label": label, "score": score, "status": status, "finite": finite, **extra}


RANKING_ROWS = [
    _row("queued", None, "queued"),
    _row("three", 3.0),
    _row("nan", NAN),
    _row("five-a", 5.0),
    _row("unmet", None, "unmet"),
    _row("overflow", INF),
    _row("five-b", 5.0),
    _row("failed", None, "failed", error="CUDA out of memory"),
    _row("one", 1.0),
    _row("rejected", None, "rejected"),
    _row("lost", None, "lost"),
    _row("running", None, "running"),
    _row("minus-inf", -INF),
]


def test_ranking_ties_share_average_rank_and_unranked_rows_follow_with_reasons():
    ranked = rank_rows(RANKING_ROWS)
    assert [r["label"] for r in ranked] == [
        "five-a",
        "five-b",
        "three",
        "one",
        "overflow",
        "minus-inf",
        "nan",
        "unmet",
        "rejected",
        "failed",
        "lost",
        "running",
        "queued",
    ]
    assert [r["rank"] for r in ranked[:4]] == [1.5, 1.5, 3.0, 4.0]
    assert all(r["rank"] is None and r["reason"] for r in ranked[4:])
    assert all(r["reason"] is None for r in ranked[:4])
    assert [r["position"] for r in ranked] == list(range(1, len(RANKING_ROWS) + 1))
    reasons = {r["label"]: r["reason"] for r in ranked}
    assert "+inf" in reasons["overflow"] and "best" in reasons["overflow"]
    assert "NaN" in reasons["nan"]
    assert reasons["unmet"].startswith("unmet")
    assert reasons["rejected"].startswith("rejected")
    assert reasons["failed"] == "failed: CUDA out of memory"
    assert reasons["queued"].startswith("pending")
    # the input is left untouched and extra fields pass through
    assert "rank" not in RANKING_ROWS[1]
    assert next(r for r in ranked if r["label"] == "failed")["error"] == "CUDA out of memory"


def test_ranking_lower_is_better_reverses_order_and_the_overflow_side():
    ranked = rank_rows(RANKING_ROWS, higher_is_better=False)
    assert [(r["label"], r["rank"]) for r in ranked[:4]] == [
        ("one", 1.0),
        ("three", 2.0),
        ("five-a", 3.5),
        ("five-b", 3.5),
    ]
    # -inf is now the best-looking overflow, so it leads the unranked rows
    assert ranked[4]["label"] == "minus-inf"


def test_ranking_trusts_the_finite_flag_and_ranks_only_done_rows():
    rows = [_row("flagged", 2.0, finite=False), _row("ok", 1.0), _row("unmet-with-score", 9.0, "unmet")]
    ranked = rank_rows(rows)
    assert [(r["label"], r["rank"]) for r in ranked] == [
        ("ok", 1.0),
        ("flagged", None),
        ("unmet-with-score", None),
    ]


def test_ranking_of_nothing_is_empty():
    assert rank_rows([]) == []


# ---------------------------------------------------------------- correlation


def test_correlation_hand_computed_without_ties():
    # d = (-1, 1, -1, 1, 0): rho = 1 - 6·4 / (5·24) = 0.8; 8 concordant, 2 discordant pairs: tau = 0.6
    result = correlation([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert result["spearman"] == pytest.approx(0.8)
    assert result["kendall"] == pytest.approx(0.6)
    assert result["n_used"] == 5 and result["n_nonfinite"] == 0 and result["note"] is None


def test_correlation_with_ties_uses_average_ranks_and_tau_b():
    # y ranks (1, 2.5, 2.5, 4): rho = 4.5 / sqrt(5 · 4.5) = 3/sqrt(10); tau-b = 5 / sqrt(6 · 5)
    result = correlation([1, 2, 3, 4], [1, 2, 2, 3])
    assert result["spearman"] == pytest.approx(3 / math.sqrt(10))
    assert result["kendall"] == pytest.approx(5 / math.sqrt(30))


def test_correlation_drops_nonfinite_and_missing_pairs_and_counts_them():
    xs = [1, 2, 3, 4, 5, 6, 7, NAN, 9]
    ys = [2, 1, 4, 3, 5, NAN, INF, 1, None]
    result = correlation(xs, ys)
    assert result["spearman"] == pytest.approx(0.8)
    assert (result["n_used"], result["n_nonfinite"], result["n_missing"]) == (5, 3, 1)


@pytest.mark.parametrize(
    ("xs", "ys", "phrase"),
    [
        ([1, 2], [2, 1], "fewer than 3"),
        ([1, 2, 3, NAN], [1, 2, INF, 4], "fewer than 3"),
        ([], [], "fewer than 3"),
        ([1, 2, 3], [5, 5, 5], "constant"),
    ],
)
def test_correlation_without_enough_information_gives_none_and_a_note(xs, ys, phrase):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy ConstantInputWarning either: we never ask
        result = correlation(xs, ys)
    assert result["spearman"] is None and result["kendall"] is None
    assert phrase in result["note"]
    json.dumps(result, allow_nan=False)


def test_correlation_rejects_unequal_lengths():
    with pytest.raises(ValueError):
        correlation([1, 2, 3], [1, 2])


# ---------------------------------------------------------------- top-% table

# ground truth: a best (10) ... j worst (1); method order over finite scores: b e d g a j i h;
# c is NaN and f has no score, so neither can enter the method's top-k.
GT = {key: float(10 - i) for i, key in enumerate("abcdefghij")}
SCORES = {"a": 5.0, "b": 9.0, "c": NAN, "d": 7.0, "e": 8.0, "f": None, "g": 6.0, "h": 1.0, "i": 2.0, "j": 3.0}
COSTS = {"a": 100.0, "b": 200.0, "c": 300.0, "d": 400.0, "e": 500.0, "f": None}
COSTS |= {key: 10.0 for key in "ghij"}


def _table_by_p(**kwargs):
    return {row["p"]: row for row in top_percent_table(GT, SCORES, COSTS, **kwargs)}


def test_top_percent_k_common_and_spe_by_hand():
    table = _table_by_p()
    assert [table[p]["k"] for p in (10, 20, 30, 40, 50, 100)] == [1, 2, 3, 4, 5, 10]
    assert table[10]["common"] == 0.0  # GT {a} vs method {b}
    assert table[20]["common"] == 0.5  # {a,b} vs {b,e}
    assert table[30]["common"] == pytest.approx(1 / 3)  # {a,b,c} vs {b,e,d}
    assert table[40]["common"] == 0.5  # {a,b,c,d} vs {b,e,d,g}
    assert table[50]["common"] == pytest.approx(0.8)  # {a..e} vs {b,e,d,g,a}
    assert table[100]["common"] == pytest.approx(0.8)  # c and f never enter the method's top-k
    # spe over the GT top-k: k = 4 keeps a, b, d (c is NaN): d = (2, -1, -1) -> 1 - 36/24
    assert table[40]["spe"] == pytest.approx(-0.5) and table[40]["n_spe"] == 3
    # k = 5 adds e: d = (3, -1, 0, -2) -> 1 - 6·14/60
    assert table[50]["spe"] == pytest.approx(-0.4)
    # all 8 finite pairs: sum d² = 30 -> 1 - 180/504 = 9/14
    assert table[100]["spe"] == pytest.approx(9 / 14)
    for p in (10, 20, 30):  # at most 2 finite pairs in these top-k sets
        assert table[p]["spe"] is None and "fewer than 3" in table[p]["note"]


def test_top_percent_duration_is_over_the_ground_truth_top_k():
    table = _table_by_p()
    assert table[10]["duration_mean_s"] == 100.0 and table[10]["duration_std_s"] == 0.0
    assert table[20]["duration_mean_s"] == 150.0 and table[20]["duration_std_s"] == 50.0
    assert table[30]["duration_mean_s"] == 200.0
    assert table[30]["duration_std_s"] == pytest.approx(math.sqrt(20000 / 3))
    assert table[50]["duration_mean_s"] == 300.0
    assert table[50]["duration_std_s"] == pytest.approx(math.sqrt(20000))
    # f has no cost: nine of the ten architectures contribute
    assert table[100]["n_duration"] == 9
    assert table[100]["duration_mean_s"] == pytest.approx((1500 + 40) / 9)


def test_top_percent_orientation_and_ground_truth_without_value():
    negated = {key: (None if v is None else -v) for key, v in SCORES.items()}
    flipped = {row["p"]: row for row in top_percent_table(GT, negated, COSTS, higher_is_better=False)}
    plain = _table_by_p()
    for p in plain:
        assert flipped[p]["common"] == plain[p]["common"]
        assert flipped[p]["spe"] == (None if plain[p]["spe"] is None else pytest.approx(-plain[p]["spe"]))
    # keys without a finite ground truth are not part of N
    table = top_percent_table(GT | {"x": None, "y": NAN}, SCORES, COSTS, percents=(100,))
    assert table[0]["k"] == 10


def test_top_percent_method_ties_at_the_cut_count_by_expectation_in_any_order():
    gt = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
    scores = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0}
    forward = top_percent_table(gt, scores, {}, percents=(25, 50))
    backward = top_percent_table(dict(reversed(gt.items())), dict(reversed(scores.items())), {}, (25, 50))
    # one slot shared by three tied scores, one of which is GT's top: 1/3; two slots, two hits: 4/3 / 2
    assert [row["common"] for row in forward] == pytest.approx([1 / 3, 2 / 3])
    assert [row["common"] for row in backward] == [row["common"] for row in forward]
    assert forward[0]["duration_mean_s"] is None


def test_top_percent_k_uses_exact_floor_and_reports_k_zero():
    gt = {f"k{i}": float(i) for i in range(375)}
    # 375 · 18.4 / 100 is 68.99999… in floats but exactly 69
    assert top_percent_table(gt, {}, {}, percents=(18.4,))[0]["k"] == 69
    small = top_percent_table({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}, {}, percents=(10,))[0]
    assert small["k"] == 0 and small["common"] is None and "k = " in small["note"]
    with pytest.raises(ValueError):
        top_percent_table(gt, {}, {}, percents=(0,))


# ---------------------------------------------------------------- matrix, costs, bootstrap


def test_method_matrix_pairs_over_shared_finite_keys():
    scores = {
        "up": {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0},
        "down": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0, "e": 9.0},
        "sparse": {"a": 1.0, "b": 2.0, "c": NAN, "z": 5.0},
    }
    matrix = method_matrix(scores)
    assert matrix["up"]["up"] == pytest.approx(1.0)
    assert matrix["up"]["down"] == pytest.approx(-1.0) and matrix["down"]["up"] == matrix["up"]["down"]
    assert matrix["up"]["sparse"] is None and matrix["sparse"]["down"] is None


def test_cost_summary_means_totals_and_ratio_to_reference():
    summary = cost_summary({"fear": [100.0, 200.0, None], "synflow": [1.0, 3.0], "params": []})
    assert summary["fear"] == {
        "n": 2,
        "n_missing": 1,
        "mean_s": 150.0,
        "total_s": 300.0,
        "ratio_to_reference": 1.0,
    }
    assert summary["synflow"]["ratio_to_reference"] == pytest.approx(2 / 150)
    assert summary["params"]["mean_s"] is None and summary["params"]["ratio_to_reference"] is None
    assert cost_summary({"synflow": [1.0]})["synflow"]["ratio_to_reference"] is None


def test_bootstrap_matches_a_plain_scipy_loop_over_the_same_resamples():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, size=12).astype(float)  # many ties on purpose
    y = x + rng.integers(0, 4, size=12)
    result = bootstrap_ci([*x, NAN], [*y, 1.0], n_boot=300, seed=7, level=0.9)
    picks = np.random.default_rng(7).integers(0, 12, size=(300, 12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = np.array([spearmanr(x[p], y[p]).statistic for p in picks])
    valid = reference[np.isfinite(reference)]
    assert result["n_valid"] == valid.size
    assert [result["low"], result["high"]] == pytest.approx(np.quantile(valid, [0.05, 0.95]).tolist())
    assert result["level"] == 0.9 and result["note"] is None


def test_bootstrap_is_seeded_and_brackets_a_strong_correlation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = x + 0.5 * rng.normal(size=500)
    first, again = bootstrap_ci(x, y, seed=1), bootstrap_ci(x, y, seed=1)
    assert first == again
    assert first != bootstrap_ci(x, y, seed=2)
    rho = spearmanr(x, y).statistic
    assert first["low"] < rho < first["high"] and first["high"] - first["low"] < 0.15


def test_bootstrap_with_too_few_pairs_gives_a_note():
    result = bootstrap_ci([1.0, 2.0, NAN], [1.0, 2.0, 3.0])
    assert result["low"] is None and "fewer than 3" in result["note"]


# ---------------------------------------------------------------- whole report


def _rows(scores, statuses=None, costs=None):
    statuses, costs = statuses or {}, costs or {}
    return [
        {
            "key": key,
            "score": score,
            "finite": score is not None and math.isfinite(score),
            "status": statuses.get(key, "done"),
            "cost_s": costs.get(key),
        }
        for key, score in scores.items()
    ]


def _report(**kwargs):
    fear_rows = _rows(
        {"a": 0.9, "b": 0.8, "c": 0.7, "d": None, "e": None, "f": 0.2, "x": 0.5},
        statuses={"d": "unmet", "e": "rejected"},
        costs={"a": 300.0, "b": 200.0, "c": 250.0, "d": 400.0, "e": 100.0, "f": 250.0},
    )
    fear_rows.append(dict(fear_rows[0]))  # the same architecture listed twice in the batch
    synflow_rows = _rows(
        {"a": 1e40, "b": INF, "c": 3.0, "d": 4.0, "e": 1.0, "f": 2.0},
        costs={key: 0.5 for key in "abcdef"},
    )
    queued = _rows({"a": None, "b": None}, statuses={"a": "queued", "b": "failed"})
    gt = {"a": 94.0, "b": 93.0, "c": 92.0, "d": 91.0, "e": 90.0, "f": 89.0, "g": 88.0, "h": None}
    return build_report(
        {"fear": fear_rows, "synflow": synflow_rows, "shortreg": queued}, gt, ground_truth_name="gt", **kwargs
    )


def test_build_report_counts_partition_the_ground_truth_set():
    report = _report(n_boot=200)
    json.dumps(report, allow_nan=False)  # never NaN or inf in the output
    assert report["ground_truth"] == {"name": "gt", "n": 7, "n_ignored": 1}
    fear = report["methods"]["fear"]
    assert (fear["n_used"], fear["n_unmet"], fear["n_rejected"], fear["n_missing"]) == (4, 1, 1, 1)
    assert fear["n_without_ground_truth"] == 1 and fear["n_duplicate_rows"] == 1
    assert fear["spearman"] == pytest.approx(1.0) and fear["kendall"] == pytest.approx(1.0)
    synflow = report["methods"]["synflow"]
    assert (synflow["n_used"], synflow["n_nonfinite"], synflow["n_missing"]) == (5, 1, 1)
    # pairs (94, 1e40) (92, 3) (91, 4) (90, 1) (89, 2): d = (0, 1, -1, 1, -1) -> 1 - 6·4/120
    assert synflow["spearman"] == pytest.approx(0.8)
    shortreg = report["methods"]["shortreg"]
    assert (shortreg["n_pending"], shortreg["n_failed"], shortreg["n_used"]) == (1, 1, 0)
    assert shortreg["spearman"] is None and "fewer than 3" in shortreg["note"]
    for entry in report["methods"].values():
        parts = ("n_used", "n_nonfinite", "n_unmet", "n_rejected", "n_failed", "n_lost", "n_pending")
        assert sum(entry[p] for p in parts) + entry["n_other"] + entry["n_missing"] == 7


def test_build_report_top_percent_matrix_costs_and_ci():
    report = _report(n_boot=200, percents=(50, 100))
    fear = report["methods"]["fear"]
    # N = 7: k = 3 -> GT top {a, b, c}; FEAR's top 3 over finite scores {a, b, c}
    assert [(row["p"], row["k"], row["common"]) for row in fear["top_percent"]] == [
        (50, 3, 1.0),
        (100, 7, 4 / 7),
    ]
    assert fear["top_percent"][0]["duration_mean_s"] == 250.0
    assert fear["spearman_ci"]["n_boot"] == 200
    assert report["matrix"]["fear"]["synflow"] == report["matrix"]["synflow"]["fear"]
    costs = report["costs"]
    assert costs["fear"]["n"] == 6 and costs["fear"]["total_s"] == 1500.0  # x has no cost, dup collapsed
    assert costs["synflow"]["ratio_to_reference"] == pytest.approx(0.5 / 250.0)


def test_build_report_orients_lower_is_better_methods():
    gt = {k: float(i) for i, k in enumerate("abcde")}
    rows = _rows({k: -float(i) for i, k in enumerate("abcde")})
    report = build_report({"loss": rows}, gt, higher_is_better={"loss": False}, n_boot=50, percents=(40,))
    entry = report["methods"]["loss"]
    assert entry["higher_is_better"] is False and entry["spearman"] == pytest.approx(1.0)
    assert entry["top_percent"][0]["common"] == 1.0


def test_markdown_contains_the_three_tables():
    report = _report(n_boot=100)
    report["methods"]["odd|name"] = report["methods"]["fear"]
    text = report_markdown(report)
    assert "| method | Spearman ρ | 95% CI | Kendall τ |" in text
    assert "## Top-% table: fear" in text and "| top % | k | spe | common | duration (s) |" in text
    assert "| 10 | 0 |" in text  # N = 7, p = 10: k = 0, shown with dashes
    assert "## Method vs method (Spearman ρ)" in text and "| fear | 1.00 |" in text
    assert "| method | n | mean s / arch | total s | × fear |" in text
    assert "| fear | 6 | 250.0 | 1500.0 | 1 |" in text
    assert "odd\\|name" in text
    assert "| shortreg | — |" in text


def test_reports_package_imports_neither_torch_nor_matplotlib():
    code = "import sys, app.services.reports; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
