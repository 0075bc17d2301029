"""bench/reproduce_search: candidate draws, picks and costs, the table, and one quick search end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import reproduce_search as rs
from bench.experiments import draw_archs


def test_candidates_come_from_the_pool_and_repeat_with_the_seed() -> None:
    pool = draw_archs(50, seed=0)
    first = rs.sample_candidates(10, 0, pool)
    assert first == rs.sample_candidates(10, 0, pool) and first != rs.sample_candidates(10, 1, pool)
    assert len(set(first)) == 10 and set(first) <= set(pool)
    everywhere = rs.sample_candidates(20, 3)
    assert len(set(everywhere)) == 20 and all(0 <= i < rs.NB201_SIZE for i in everywhere)
    with pytest.raises(ValueError, match="pool"):
        rs.sample_candidates(51, 0, pool)


def test_pick_is_the_best_ranked_row_and_cost_counts_rejected_ones() -> None:
    rows = [
        {"index": 7, "rank": 2.0, "position": 1, "cost_s": 10.0, "status": "done"},
        {"index": 3, "rank": 1.0, "position": 0, "cost_s": 12.0, "status": "done"},
        {"index": 9, "rank": None, "position": 2, "cost_s": 4.0, "status": "rejected"},
        {"index": 5, "rank": None, "position": 3, "cost_s": None, "status": "failed"},
    ]
    assert rs.best_pick(rows)["index"] == 3
    assert rs.total_cost(rows) == pytest.approx(26.0)
    assert rs.best_pick([rows[2]]) is None


def test_fear_threshold_option_reaches_the_fear_entry() -> None:
    args = rs.build_parser().parse_args(["--fear-threshold", "0.35"])
    args.preset, args.shortreg_epochs = "cpu", 6
    fear_entry = rs.SearchRun(None, args).methods()[0]  # type: ignore[arg-type]
    assert fear_entry["config"] == {"threshold": 0.35} and fear_entry["alias"] == rs.FEAR_ALIAS
    args = rs.build_parser().parse_args([])
    args.preset, args.shortreg_epochs = "cpu", 6
    assert "config" not in rs.SearchRun(None, args).methods()[0]  # type: ignore[arg-type]


def test_k_larger_than_the_pool_is_refused_before_anything_starts(capsys) -> None:  # type: ignore[no-untyped-def]
    assert rs.main(["--pool", "5", "--k", "6", "--url", "http://127.0.0.1:9"]) == 2
    assert "--k must be 1..5" in capsys.readouterr().err


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_quick_search_through_an_embedded_service(tmp_path: Path) -> None:
    out = tmp_path / "search.md"
    code = rs.main(["--quick", "--k", "3", "--seeds", "0", "--oracle", "--out", str(out)])
    assert code == 0
    results = json.loads(out.with_suffix(".json").read_text())
    (result,) = results
    assert len(result["candidates"]) == 3
    for alias in (rs.FEAR_ALIAS, "shortreg-e2"):
        entry = result["methods"][alias]
        assert entry["total_cost_s"] > 0
        assert sum(entry["statuses"].values()) == 3
        assert entry["pick"] is None or entry["pick"] in result["candidates"]
    assert result["oracle_best"] is not None
    text = out.read_text()
    assert "FEAR (4 × fastest)" in text and "shortreg (2 epochs)" in text
    # Tiny synthetic ground truth sits at (or near) chance: the table says so whenever it does.
    picked = [e["pick_accuracy"] for e in result["methods"].values() if e["pick_accuracy"] is not None]
    near_chance = not picked or max(picked) - 10.0 < rs.NEAR_CHANCE_POINTS
    assert ("WARNING" in text) == near_chance
