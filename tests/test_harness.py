"""The experiment harness: `synthetic/tiny` end to end through an embedded service it starts itself,
plus the pure parts of its summary (ground-truth sanity, paired Spearman difference, architecture draw)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench import summary
from bench.experiments import (
    EXPERIMENTS,
    FEAR_ALIAS,
    GROUND_TRUTH_ALIAS,
    ZERO_COST_MEASURES,
    draw_archs,
    fear_arch_ids,
    get_experiment,
)
from bench.harness import load_ground_truth_file, published_truth, run_experiment


def _in_unit_range(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isfinite(value) and -1.0 <= value <= 1.0)


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_synthetic_tiny_end_to_end(tmp_path: Path) -> None:
    experiment = get_experiment("synthetic/tiny")
    out = tmp_path / "results"
    published = load_ground_truth_file(
        _published_fixture(tmp_path, experiment.architectures(None, 0)), "nb201_index", "acc", "pub-test"
    )
    # No --url: the harness starts `python -m app.cli serve` from an environment without the test
    # session's FASTARCHRANK_* variables, i.e. the embedded SQLite + filesystem-broker default.
    run = run_experiment(experiment, url=None, out_dir=out, seed=0, ground_truth=published)

    aliases = [m.alias for m in experiment.methods()]
    ranked = [a for a in aliases if a != GROUND_TRUTH_ALIAS]
    assert set(ZERO_COST_MEASURES) <= set(aliases) and FEAR_ALIAS in aliases
    assert len([a for a in aliases if a.startswith("shortreg-e")]) >= 2
    n = experiment.n_archs
    assert run["n_archs"] == n
    assert run["counts"] == {"done": n * len(aliases)}, f"evaluations did not all finish: {run['counts']}"

    for name in ("report.json", "report.md", "summary.md", "export.csv", "export.json", "run.json"):
        assert (out / name).stat().st_size > 0, name

    report = json.loads((out / "report.json").read_text())
    assert report["ground_truth"]["name"] == f"method:{GROUND_TRUTH_ALIAS}"
    assert report["ground_truth"]["n"] == n
    assert list(report["methods"]) == ranked
    for alias, entry in report["methods"].items():
        for key in ("spearman", "kendall"):
            assert _in_unit_range(entry[key]), (alias, key, entry[key])
        ci = entry["spearman_ci"]
        assert _in_unit_range(ci["low"]) and _in_unit_range(ci["high"]), (alias, ci)
        if ci["low"] is not None:
            assert ci["low"] <= ci["high"]
        assert 0 <= entry["n_used"] <= n
        assert [row["p"] for row in entry["top_percent"]] == report["percents"]
        cost = report["costs"][alias]
        assert cost["n"] == n and cost["mean_s"] > 0 and cost["total_s"] > 0, (alias, cost)
    matrix_values = [v for row in report["matrix"].values() for v in row.values()]
    assert all(_in_unit_range(v) for v in matrix_values)
    # params and flops both vary across architectures: at least that correlation must be defined.
    assert report["matrix"]["params"]["flops"] is not None

    rows = json.loads((out / "export.json").read_text())["rows"]
    assert len(rows) == n * len(aliases)
    assert {r["method"] for r in rows} == set(aliases)
    assert all(r["status"] == "done" and r["cost_s"] > 0 for r in rows)
    csv_rows = list(csv.DictReader(io.StringIO((out / "export.csv").read_text())))
    assert len(csv_rows) == len(rows)

    text = (out / "summary.md").read_text()
    for heading in (
        "## Ground-truth sanity",
        "## Ranking quality",
        "## Top-% table for fear",
        "## Cost per method",
    ):
        assert heading in text
    for alias in ranked:
        assert f"\n| {alias} | " in text, f"{alias} missing from the summary's tables"
    assert f"| {GROUND_TRUTH_ALIAS} (ground truth) |" in text
    sanity = run["ground_truth_sanity"]
    assert sanity["n"] == n and sanity["chance"] == pytest.approx(10.0)
    assert sanity["min"] <= sanity["mean"] <= sanity["max"]
    # The warning appears exactly when the sanity check failed (at this scale it does: chance accuracy).
    assert ("WARNING: this ground truth cannot rank anything" in text) == (not sanity["ok"])

    for name in ("score_vs_ground_truth.png", "cost_vs_spearman.png"):
        with Image.open(out / name) as image:
            image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
            assert image.format == "PNG" and image.width >= 200 and image.height >= 200

    # the published ground truth: uploaded, every method (full too) reported against it, and named
    assert run["published_ground_truth"]["n_uploaded"] == n
    pub = json.loads((out / "report_published.json").read_text())
    assert pub["ground_truth"]["name"] == "pub-test" and pub["ground_truth"]["n"] == n
    assert list(pub["methods"]) == aliases  # full is a method here, not the ground truth
    truth = {r["architecture_key"]: published.values[r["index"]] for r in rows}
    full_scores = {r["architecture_key"]: r["score"] for r in rows if r["method"] == GROUND_TRUTH_ALIAS}
    from scipy.stats import spearmanr

    keys = sorted(truth)
    expected = spearmanr([truth[k] for k in keys], [full_scores[k] for k in keys]).statistic
    if math.isfinite(expected):
        assert pub["methods"][GROUND_TRUTH_ALIAS]["spearman"] == pytest.approx(expected)
    assert "## Against the published ground truth `pub-test`" in text
    assert "Ground truth of this table: `method:full`" in text
    assert "Ground truth of this table: `pub-test`" in text
    published_part = text.split("## Against the published ground truth")[1]
    assert f"\n| {GROUND_TRUTH_ALIAS} | " in published_part


def _published_fixture(tmp_path: Path, arch_ids: list[int]) -> Path:
    """A small published-accuracy file: the batch's architectures, two it lacks, one empty value."""
    path = tmp_path / "published.csv"
    lines = ["nb201_index,genotype,acc"]
    lines += [f"{i},g{i},{94.0 - 7.5 * pos:.2f}" for pos, i in enumerate(arch_ids)]
    lines += ["15000,x,55.5", "15001,y,"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ground_truth_file_is_read_and_bad_files_are_named(tmp_path: Path) -> None:
    path = _published_fixture(tmp_path, [5, 7])
    published = load_ground_truth_file(path, "nb201_index", "acc", "pub")
    assert published.values == {5: 94.0, 7: 86.5, 15000: 55.5}  # the empty value is skipped
    rows = [{"index": 7, "architecture_key": "k7"}, {"index": 9, "architecture_key": "k9"}]
    assert published_truth(rows, published) == {"k7": 86.5}
    with pytest.raises(ValueError, match=r"no column 'top1'.*nb201_index, genotype, acc"):
        load_ground_truth_file(path, "nb201_index", "top1", "pub")
    bad = tmp_path / "bad.csv"
    bad.write_text("nb201_index,acc\n3,0.93x\n")
    with pytest.raises(ValueError, match=r"bad.csv:2"):
        load_ground_truth_file(bad, "nb201_index", "acc", "pub")
    bad.write_text("nb201_index,acc\n3,193\n")
    with pytest.raises(ValueError, match=r"percent"):
        load_ground_truth_file(bad, "nb201_index", "acc", "pub")


def test_ground_truth_sanity_flags_chance_and_flat_accuracies() -> None:
    chance = summary.ground_truth_sanity([10.0, 11.0, 12.5, 9.0, 10.5], num_classes=10)
    assert not chance["ok"] and any("chance" in p for p in chance["problems"])
    flat = summary.ground_truth_sanity([60.0, 60.2, 60.1, 59.9, 60.0], num_classes=10)
    assert not flat["ok"] and any("spread" in p for p in flat["problems"])
    good = summary.ground_truth_sanity([45.0, 52.0, 61.0, 58.5, 49.0, 66.0], num_classes=10)
    assert good["ok"] and good["problems"] == []
    assert good["max"] == 66.0 and good["min"] == 45.0
    assert good["std"] == pytest.approx(7.2327, abs=1e-3)  # population std (ddof 0)
    assert not summary.ground_truth_sanity([70.0, 80.0], num_classes=10)["ok"]  # too few to rank


def test_paired_spearman_difference() -> None:
    keys = [f"a{i}" for i in range(30)]
    truth = {k: float(i) for i, k in enumerate(keys)}
    perfect = {k: 2.0 * v for k, v in truth.items()}
    reversed_ = {k: -v for k, v in truth.items()}
    same = summary.paired_spearman_difference(truth, perfect, perfect)
    assert same["delta"] == 0.0 and same["low"] == 0.0 and same["high"] == 0.0 and same["n"] == 30
    worse = summary.paired_spearman_difference(truth, reversed_, perfect)
    assert worse["delta"] == pytest.approx(-2.0) and worse["high"] == pytest.approx(-2.0)
    partial = {k: (v if i % 3 else -v) for i, (k, v) in enumerate(truth.items())}
    mixed = summary.paired_spearman_difference(truth, partial, perfect, n_boot=500)
    assert mixed["low"] <= mixed["delta"] <= mixed["high"] <= 0.0
    assert summary.paired_spearman_difference(truth, {"a0": 1.0}, perfect)["delta"] is None


def test_stage1_speed_is_scored_against_the_ground_truth() -> None:
    truth = {f"a{i}": 40.0 + i for i in range(12)}
    # Better architectures reach the threshold sooner: time falls as accuracy rises.
    rows = [
        {
            "method": FEAR_ALIAS,
            "status": "done",
            "architecture_key": key,
            "info": {"time_to_threshold_s": 100.0 - value, "stage1_epochs": 3},
        }
        for key, value in truth.items()
    ]
    rows.append({"method": FEAR_ALIAS, "status": "unmet", "architecture_key": "a99", "info": {}})
    text = "\n".join(summary.stage1_lines(rows, truth, FEAR_ALIAS))
    assert "| −time to threshold (s) | 12 | 1.000 | [1.00, 1.00] |" in text
    assert "| −stage-1 epochs | 12 | n/a | n/a |" in text  # constant: undefined, not 0
    assert summary.stage1_lines([], truth, FEAR_ALIAS) == []
    # Two stage-1 lengths: the score is broken down per group.
    for i, row in enumerate(rows[:-1]):
        row.update(score=0.4 + 0.01 * i, info={**row["info"], "stage1_epochs": 3 + i % 2})
    text = "\n".join(summary.stage1_lines(rows, truth, FEAR_ALIAS))
    assert "| 3 | 6 |" in text and "| 4 | 6 |" in text and text.count("| 1.00 |") == 2


def test_fear_sweep_shares_everything_but_its_variants_with_the_study() -> None:
    study, sweep = get_experiment("cifar10/cpu"), get_experiment("cifar10/cpu-fear-sweep")
    study_body = {m["alias"]: m for m in study.batch_body([1, 2], seed=0)["methods"]}
    sweep_body = {m["alias"]: m for m in sweep.batch_body([1, 2], seed=0)["methods"]}
    variants = {alias for alias, _ in sweep.fear_variants}
    # Identical entries: the service reuses the study's evaluations for them.
    for alias in sweep_body.keys() - variants - {FEAR_ALIAS}:
        assert sweep_body[alias] == study_body[alias], alias
    for alias in variants:
        assert sweep_body[alias]["name"] == "fear" and sweep_body[alias]["config"]
    # The sweep's reference is the threshold the recorded study ran with, pinned against preset changes.
    assert sweep_body[FEAR_ALIAS]["config"] == {"threshold": 0.35}
    assert dict(sweep.fear_variants)["fear-t40"] == {"threshold": 0.40}


def test_architecture_draw_comes_from_the_fear_list() -> None:
    ids = fear_arch_ids()
    assert len(ids) == 1000 and ids[0] == 6983 and ids[-1] == 11048
    first = draw_archs(60, seed=0)
    assert first == draw_archs(60, seed=0) and first != draw_archs(60, seed=1)
    assert len(set(first)) == 60 and set(first) <= set(ids)
    assert draw_archs(1000, seed=3) == list(ids)
    with pytest.raises(ValueError):
        draw_archs(1001, seed=0)


def test_experiments_post_every_method_with_distinct_aliases() -> None:
    for experiment in EXPERIMENTS.values():
        entries = experiment.methods()
        aliases = [m.alias for m in entries]
        assert len(set(aliases)) == len(aliases), experiment.name
        full = {"full"} if experiment.include_full else set()
        assert {m.name for m in entries} == {*full, "fear", "shortreg", *experiment.zero_cost}
        assert set(experiment.zero_cost) <= set(ZERO_COST_MEASURES)
        if not experiment.fear_variants:
            assert experiment.zero_cost == ZERO_COST_MEASURES, experiment.name
        body = experiment.batch_body([1, 2, 3], seed=5)
        assert body["seed"] == 5 and [i["nb201_index"] for i in body["items"]] == [1, 2, 3]
        assert len(body["methods"]) <= 32  # the API's per-batch limit


def test_published_experiment_is_a_valid_batch_with_a_funnel() -> None:
    """cifar10/cpu-published: n ≥ 200, every measure at both network sizes, a funnel the API accepts."""
    from app.schemas import BatchCreate
    from app.services.submission import plan_funnel, plan_methods

    experiment = get_experiment("cifar10/cpu-published")
    assert experiment.n_archs >= 200 and not experiment.include_full
    body = BatchCreate.model_validate(experiment.batch_body(experiment.architectures(), seed=0))
    planned = plan_methods(body, "b" * 32)
    aliases = {p.alias for p in planned}
    for measure in ZERO_COST_MEASURES:
        assert {measure, f"{measure}@cpu"} <= aliases
    by_alias = {p.alias: p.resolved for p in planned}
    network = by_alias["synflow"].config["network"]
    assert (network["C"], network["N"]) in ((None, None), (16, 5))  # None: NB201's own C=16, N=5
    assert by_alias["synflow@cpu"].config["network"]["N"] == 1
    stage2 = {p.alias: p.resolved for p in plan_funnel(body, planned, "b" * 32)}
    # the funnel's FEAR is the study's FEAR (same identity: reused), the N=2 shortreg is new
    assert stage2["funnel-fear"].config_hash == by_alias[FEAR_ALIAS].config_hash
    assert stage2["funnel-shortreg-e2-n2"].config["network"]["N"] == 2
    with pytest.raises(ValueError, match="ground-truth-file"):
        run_experiment(experiment, url="http://127.0.0.1:9", out_dir=Path("/nonexistent"))
