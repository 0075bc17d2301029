"""Stored results stay addressable: the effective configs (and hashes) of every preset of every
method as resolved before the spec refactor and the paper-recipe options (tests/data/
config_hashes_v1.json) must validate and hash exactly as then; only presets whose recipe changed
on purpose resolve to a new identity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.catalog.methods import all_methods, config_hash, resolve

STORED: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "config_hashes_v1.json").read_text())
# (method, preset) pairs whose recipe changed on purpose (issue 13): per-epoch cosine, fp32,
# deterministic, the authors' ImageNet16 inputs, DARTS sizes and NB301 mixup.
CHANGED_RECIPES = {("fear", "paper"), ("shortreg", "paper"), ("full", "paper")}


@pytest.mark.parametrize("stored_hash", sorted(STORED["by_hash"]))
def test_a_stored_config_validates_and_keeps_its_hash(stored_hash: str) -> None:
    entry = STORED["by_hash"][stored_hash]
    model = all_methods()[entry["method"]].config_model
    revalidated = model.model_validate(entry["config"]).model_dump(mode="json")
    assert config_hash(entry["method"], revalidated, model) == stored_hash


def test_unchanged_presets_resolve_to_their_old_identity() -> None:
    mismatched = []
    for key, old_hash in STORED["presets"].items():
        method, preset, space, dataset = key.split("|")
        if (method, preset) in CHANGED_RECIPES:
            continue
        if resolve(method, preset, None, space, dataset, ["m"]).config_hash != old_hash:
            mismatched.append(key)
    assert mismatched == []


def test_a_result_of_the_old_paper_recipe_is_never_reused_for_the_new_one() -> None:
    reused = []
    for key, old_hash in STORED["presets"].items():
        method, preset, space, dataset = key.split("|")
        changed = (method, preset) in CHANGED_RECIPES
        if changed and resolve(method, preset, None, space, dataset, ["m"]).config_hash == old_hash:
            reused.append(key)
    assert reused == []


def test_the_old_recipe_stays_requestable_by_its_config() -> None:
    # A client that posts the old paper config explicitly gets the stored result's identity back.
    key = "fear|paper|nb201|cifar10"
    old_hash = STORED["presets"][key]
    old_config = STORED["by_hash"][old_hash]["config"]
    again = resolve("fear", "paper", old_config, "nb201", "cifar10", ["m"])
    assert again.config_hash != old_hash  # the new preset's fields are not in the old config ...
    explicit = {**old_config, "lr_schedule": "per_iteration", "precision": "bf16", "deterministic": False}
    assert resolve("fear", "paper", explicit, "nb201", "cifar10", ["m"]).config_hash == old_hash
