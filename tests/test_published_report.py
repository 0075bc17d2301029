"""bench/published_report.py on a tiny export and a tiny published ground truth written here."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from app.genotypes import nb201
from bench import published_report

INDICES = [101, 102, 103, 104, 105, 106, 107, 108]  # published accuracy 91..98 (rank = position)
EXTRA = 200  # in the export, not in the published file
FIELDS = ["method", "method_name", "preset", "space", "architecture_key", "genotype", "index", "status"]
FIELDS += ["score", "finite", "cost_s"]


def _row(method: str, index: int, score: float | None, status: str = "done", cost: float = 1.0) -> dict:
    genotype = nb201.from_index(index).canonical
    finite = score is not None and math.isfinite(score)
    return {
        "method": method,
        "method_name": method,
        "preset": "cpu",
        "space": "nb201",
        "architecture_key": genotype,
        "genotype": genotype,
        "index": index,
        "status": status,
        "score": "" if score is None else score,
        "finite": finite,
        "cost_s": cost,
    }


def _write_fixture(tmp_path: Path) -> tuple[Path, Path]:
    rows = []
    for position, index in enumerate([*INDICES, EXTRA]):
        order = position + 1 if index != EXTRA else 0
        rows.append(_row("synflow", index, float(order), cost=0.02))  # perfect against the published truth
        swapped = {1: 2, 2: 1}.get(order, order)  # one adjacent swap: ρ = 1 − 6·2/(8·63) = 41/42
        rows.append(_row("naswot", index, float(swapped), cost=0.2))
        rows.append(_row("full", index, 0.4 + swapped / 100, cost=50.0))  # the in-service ground truth
        if order == 3:
            rows.append(_row("fear", index, math.nan, cost=20.0))  # done but non-finite
        elif order == 4:
            rows.append(_row("fear", index, None, status="unmet", cost=30.0))
        else:
            rows.append(_row("fear", index, -float(order), cost=10.0))  # reversed
    export = tmp_path / "export.csv"
    with export.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    truth = tmp_path / "published.csv"
    with truth.open("w", newline="") as handle:
        plain = csv.writer(handle)
        plain.writerow(["nb201_index", "genotype", "acc"])
        for position, index in enumerate(INDICES):
            plain.writerow([index, nb201.from_index(index).canonical, 91 + position])
        plain.writerow([999, nb201.from_index(999).canonical, ""])  # no value: ignored
    return export, truth


def _run(tmp_path: Path, key_column: str, out: str) -> dict:
    export, truth = _write_fixture(tmp_path)
    argv = [
        "--export", str(export), "--ground-truth", str(truth), "--key-column", key_column,
        "--value-column", "acc", "--ground-truth-name", "nb201-test", "--out", str(tmp_path / out),
        "--n-boot", "300", "--split-repeats", "3", "--composite-measures", "synflow,naswot",
    ]  # fmt: skip
    assert published_report.main(argv) == 0
    return json.loads((tmp_path / out / "published_report.json").read_text())


def _figures(block: dict) -> dict[str, dict]:
    return {m["method"]: m for m in block["methods"]}


def test_report_against_published_and_in_service_ground_truth(tmp_path: Path) -> None:
    result = _run(tmp_path, "nb201_index", "out")
    assert result["n_architectures"] == 9 and result["n_joined"] == 8
    published, internal = result["ground_truths"]
    assert published["n"] == 8 and published["reference"] == "synflow"
    figures = _figures(published)
    assert figures["synflow"]["n"] == 8
    assert figures["synflow"]["spearman"] == {"value": pytest.approx(1.0), "low": 1.0, "high": 1.0}
    assert figures["naswot"]["spearman"]["value"] == pytest.approx(41 / 42)
    assert figures["naswot"]["kendall"]["value"] == pytest.approx(1 - 2 * 1 / 28)  # one discordant pair
    assert figures["naswot"]["delta_vs_reference"]["value"] == pytest.approx(41 / 42 - 1)
    # fear: the NaN and the unmet architecture drop out; the rest is reversed
    assert figures["fear"]["n"] == 6
    assert figures["fear"]["spearman"]["value"] == pytest.approx(-1.0)
    assert figures["fear"]["n_delta"] == 6
    assert result["ground_truth_agreement"]["spearman"] == pytest.approx(41 / 42)
    # against the in-service full (= naswot's order on 9 architectures), naswot is perfect
    assert internal["n"] == 9 and internal["reference"] == "naswot"
    assert "full" not in _figures(internal)
    assert _figures(internal)["naswot"]["spearman"]["value"] == pytest.approx(1.0)
    # costs per architecture: fear's unmet and NaN evaluations count
    assert result["cost_per_arch_s"]["fear"] == pytest.approx((7 * 10.0 + 20.0 + 30.0) / 9)
    composite = result["composites"][0]
    assert composite["n_selection"] == 4 and composite["n_evaluation"] == 4
    assert composite["chosen"] == ["synflow"]  # perfect on any half; the smaller subset wins a tie
    assert composite["evaluation"]["spearman"]["value"] == pytest.approx(1.0)
    assert composite["cost_per_arch_s"] == pytest.approx(0.02)
    assert (tmp_path / "out" / "published_cost_vs_spearman.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "out" / "published_report.md").read_text()
    assert "ρ vs nb201-test" in text and "Δρ vs synflow" in text and "composite" in text


def test_joining_by_genotype_gives_the_same_figures(tmp_path: Path) -> None:
    by_index = _run(tmp_path, "nb201_index", "a")
    by_genotype = _run(tmp_path, "genotype", "b")
    assert by_index["ground_truths"] == by_genotype["ground_truths"]


def test_bad_columns_and_unjoinable_files_fail_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export, truth = _write_fixture(tmp_path)
    base = ["--export", str(export), "--ground-truth", str(truth), "--out", str(tmp_path / "x")]
    assert published_report.main([*base, "--value-column", "accuracy"]) == 2
    assert "no column accuracy" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("nb201_index,acc\n5000,90\n5001,91\n")
    assert (
        published_report.main([*base[:2], "--ground-truth", str(other), *base[4:], "--value-column", "acc"])
        == 2
    )
    assert "only 0 of the export's 9 architectures" in capsys.readouterr().err


def test_kendall_bootstrap_matches_scipy_on_the_same_resamples() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=12).astype(float)  # ties on both sides
    y = x + rng.normal(0, 2, size=12)
    low, high = published_report.kendall_bootstrap_ci(list(x), list(y), n_boot=400, seed=7)
    picks = np.random.default_rng(7).integers(0, 12, size=(400, 12))
    taus = np.array([kendalltau(x[p], y[p]).statistic for p in picks])
    taus = taus[np.isfinite(taus)]
    expected = np.quantile(taus, [0.025, 0.975])
    assert (low, high) == pytest.approx(tuple(expected))


def test_fixed_composite_is_reported_like_a_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export, truth = _write_fixture(tmp_path)
    base = ["--export", str(export), "--ground-truth", str(truth), "--value-column", "acc"]
    base += ["--n-boot", "200", "--split-repeats", "0", "--out", str(tmp_path / "fixed")]
    assert published_report.main([*base, "--fixed-composite", "composite:synflow+naswot"]) == 0
    result = json.loads((tmp_path / "fixed" / "published_report.json").read_text())
    figures = _figures(result["ground_truths"][0])["composite:synflow+naswot"]
    # mean ranks tie the two swapped architectures and keep every other one in place:
    # ρ = Pearson of (1.5, 1.5, 3..8) with (1..8) = sqrt(41.5 / 42)
    assert figures["spearman"]["value"] == pytest.approx(math.sqrt(41.5 / 42))
    assert figures["n"] == 8
    assert result["cost_per_arch_s"]["composite:synflow+naswot"] == pytest.approx(0.22)
    # the composite is a method here, never the zero-cost reference nor a pool measure
    assert result["ground_truths"][0]["reference"] == "synflow"
    assert result["composites"][0]["measures_pool"] == ["synflow", "naswot"]
    assert published_report.main([*base, "--fixed-composite", "composite:synflow+grasp"]) == 2
    assert "unknown measure 'grasp'" in capsys.readouterr().err


def test_an_exported_named_composite_is_oriented_as_a_mean_rank(tmp_path: Path) -> None:
    """A batch's named composite reaches the export as method_name 'composite' with its mean rank as
    the score (1 = best): the report must not read a larger mean rank as better."""
    export, truth = _write_fixture(tmp_path)
    with export.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        for position, index in enumerate(INDICES):
            row = _row("zc2", index, float(len(INDICES) - position))  # rank 1 = the best published
            writer.writerow({**row, "method_name": "composite", "preset": ""})
    argv = [
        "--export", str(export), "--ground-truth", str(truth), "--value-column", "acc",
        "--out", str(tmp_path / "out"), "--n-boot", "100", "--split-repeats", "1",
        "--composite-measures", "synflow,naswot",
    ]  # fmt: skip
    assert published_report.main(argv) == 0
    result = json.loads((tmp_path / "out" / "published_report.json").read_text())
    assert _figures(result["ground_truths"][0])["zc2"]["spearman"]["value"] == pytest.approx(1.0)


def test_funnel_cost_and_top_percent_against_the_method_run_on_every_candidate(tmp_path: Path) -> None:
    export, truth = _write_fixture(tmp_path)
    kept = {INDICES[0]: -1.0, INDICES[1]: -2.0, INDICES[4]: -5.0}  # fear's own scores (orders 1, 2, 5)
    with export.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        for index, score in kept.items():
            writer.writerow({**_row("funnel-fear", index, score, cost=10.0), "method_name": "fear"})
    argv = [
        "--export", str(export), "--ground-truth", str(truth), "--value-column", "acc",
        "--out", str(tmp_path / "out"), "--n-boot", "100", "--split-repeats", "1",
        "--composite-measures", "synflow,naswot", "--funnel", "funnel-fear=fear", "--funnel-measure", "synflow",
    ]  # fmt: skip
    assert published_report.main(argv) == 0
    result = json.loads((tmp_path / "out" / "published_report.json").read_text())
    funnel = result["funnel"]
    assert (funnel["n_kept"], funnel["n_candidates"]) == (3, 9)
    stage = funnel["methods"]["funnel-fear"]
    assert stage["cheap_cost_s"] == pytest.approx(9 * 0.02)  # synflow on every candidate
    assert stage["expensive_cost_s"] == pytest.approx(30.0)
    assert stage["estimated_expensive_all_s"] == pytest.approx(10.0 * 9)
    assert stage["cost_ratio"] == pytest.approx((30.0 + 0.18) / 90.0)
    # fear is finite on 7 candidates (orders 0, 1, 2, 5, 6, 7, 8; best = the unpublished EXTRA, order 0)
    common = {row["p"]: row["common"] for row in stage["vs_reference"]["top_percent"]}
    assert common[20.0] == 0.0  # k = 1: fear's best (EXTRA) was filtered out
    assert common[30.0] == pytest.approx(1 / 2)  # k = 2: {0, 1} vs {1, 2}
    assert common[50.0] == pytest.approx(2 / 3)  # k = 3: {0, 1, 2} vs {1, 2, 5}
    assert common[100.0] == pytest.approx(3 / 7)
    assert "## Funnel" in (tmp_path / "out" / "published_report.md").read_text()
    assert published_report.main([*argv[:-4], "--funnel", "funnel-fear"]) == 2  # no "=FULL": refused
