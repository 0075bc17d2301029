"""bench/complete_run.py: a recorded run's unfinished evaluations are re-run and merged back only
under the same identity (config hash), funnel aliases of the same evaluation included."""

from __future__ import annotations

import pytest

from bench.complete_run import CompletionError, Recorded, check_identity, completion_body, merge

HEADER = ["batch_id", "label", "method", "architecture_key", "config_hash", "status", "score", "cost_s"]


def row(label: str, method: str, status: str, score: str = "", config_hash: str = "h-fear") -> dict[str, str]:
    return {
        "batch_id": "old",
        "label": label,
        "method": method,
        "architecture_key": f"key-{label}",
        "config_hash": config_hash,
        "status": status,
        "score": score,
        "cost_s": "",
    }


def recorded() -> Recorded:
    run = {
        "request": {
            "space": "nb201",
            "dataset": "cifar10_folder",
            "seed": 3,
            "items": [{"nb201_index": i, "label": f"a{i}"} for i in range(3)],
            "methods": [{"name": "fear", "alias": "fear", "preset": "cpu"}, {"name": "params"}],
            "options": {"funnel": {"then": [{"name": "fear", "preset": "cpu", "alias": "funnel-fear"}]}},
        }
    }
    rows = [
        row("a0", "fear", "done", "0.5"),
        row("a1", "fear", "cancelled"),
        row("a2", "fear", "failed"),
        row("a1", "funnel-fear", "cancelled"),
        row("a1", "params", "done", "10", config_hash="h-params"),
    ]
    return Recorded(run, HEADER, rows)


def test_body_resubmits_only_the_unfinished_items_with_the_recorded_method_entry() -> None:
    rec = recorded()
    todo = rec.unfinished("fear")
    body = completion_body(rec, "fear", todo)
    assert [i["label"] for i in body["items"]] == ["a1", "a2"]
    assert body["methods"] == [{"name": "fear", "alias": "fear", "preset": "cpu"}]
    assert (body["space"], body["dataset"], body["seed"]) == ("nb201", "cifar10_folder", 3)
    assert rec.method_entry("funnel-fear")["alias"] == "funnel-fear"
    with pytest.raises(CompletionError, match="no method"):
        rec.method_entry("shortreg")


def test_merge_fills_every_alias_of_the_same_identity_and_keeps_the_rest() -> None:
    rec = recorded()
    new = [
        {**row("a1", "fear", "done", "0.61"), "batch_id": "new", "cost_s": "50.0"},
        {**row("a2", "fear", "failed"), "batch_id": "new"},  # failed again: left as it was
    ]
    merged, replaced = merge(rec, new, "new")
    by = {(r["label"], r["method"]): r for r in merged}
    assert replaced == {"fear": 1, "funnel-fear": 1}
    assert by[("a1", "fear")]["score"] == "0.61" and by[("a1", "fear")]["batch_id"] == "new"
    assert by[("a1", "funnel-fear")]["status"] == "done" and by[("a1", "funnel-fear")]["cost_s"] == "50.0"
    assert by[("a1", "funnel-fear")]["method"] == "funnel-fear", "the row keeps its alias"
    assert by[("a2", "fear")]["status"] == "failed" and by[("a2", "fear")]["batch_id"] == "old"
    assert by[("a0", "fear")] == rec.rows[0] and by[("a1", "params")] == rec.rows[4]


def test_another_recipe_is_refused_before_anything_is_merged() -> None:
    rec = recorded()
    todo = rec.unfinished("fear")
    check_identity(todo, [row("a1", "fear", "queued"), row("a2", "fear", "queued")])
    with pytest.raises(CompletionError, match="another config hash"):
        check_identity(todo, [row("a1", "fear", "queued", config_hash="h-changed")])
