"""The torch-free catalog of zero-cost measures: names, configs, limits, presets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.catalog.training import fear_cpu, fear_tiny
from app.catalog.zero_cost import CONFIGS, MEASURE_SPEC, MEASURES

DEFAULT_BATCH_SIZE = {name: spec.default_batch_size for name, spec in MEASURE_SPEC.items()}

BATCH_MEASURES = ["grad_norm", "snip", "grasp", "fisher", "plain", "jacob_cov", "naswot"]
SPACES = ["nb201", "nats_sss", "darts", "nb301"]
DATASETS = ["synthetic_cifar10", "cifar10", "cifar100", "imagenet16_120"]


def test_catalog_names_match_the_worker_registry() -> None:
    from worker.methods.zero_cost import measures

    WORKER_MEASURES = measures()

    assert set(MEASURES) == set(WORKER_MEASURES)
    assert {n for n, m in WORKER_MEASURES.items() if m.input == "batch"} == set(BATCH_MEASURES)


def test_families_direction_and_presets() -> None:
    for name, info in MEASURES.items():
        assert info.name == name
        assert info.family == ("static" if name in ("params", "flops") else "zero_cost")
        assert info.higher_is_better
        assert info.default_preset == "default" and set(info.presets) == {"default", "cpu", "tiny"}
        assert info.summary and "\n" not in info.summary


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_preset_validates_everywhere(name: str) -> None:
    info = MEASURES[name]
    for space in SPACES:
        for dataset in DATASETS:
            for preset in info.presets.values():
                config = info.config_model.model_validate(preset(space, dataset)).model_dump(mode="json")
                assert info.check is None or info.check(space, dataset, config) is None


def test_default_batch_sizes_and_limits() -> None:
    for name in BATCH_MEASURES:
        config = CONFIGS[name]().model_dump()
        assert config["batch_size"] == DEFAULT_BATCH_SIZE[name]
        assert MEASURES[name].presets["default"]("nb201", "cifar10")["batch_size"] == DEFAULT_BATCH_SIZE[name]
        for bad in (1, 1025):
            with pytest.raises(ValidationError):
                CONFIGS[name](batch_size=bad)
        CONFIGS[name](batch_size=2)
        CONFIGS[name](batch_size=1024)
    assert DEFAULT_BATCH_SIZE["naswot"] == 128 and DEFAULT_BATCH_SIZE["snip"] == 64


def test_measures_that_read_no_batch_take_no_batch_size() -> None:
    for name in ("synflow", "synflow_bn", "params", "flops"):
        with pytest.raises(ValidationError):
            CONFIGS[name](batch_size=64)
    for name in ("params", "flops"):
        with pytest.raises(ValidationError):
            CONFIGS[name](data={"train_size": 10})


def test_scored_network_has_no_auxiliary_head_and_no_drop_path() -> None:
    with pytest.raises(ValidationError, match="auxiliary"):
        CONFIGS["snip"](network={"auxiliary": True})
    with pytest.raises(ValidationError, match="drop_path"):
        CONFIGS["synflow"](network={"drop_path": 0.2})
    with pytest.raises(ValidationError):
        CONFIGS["snip"](netwrok={})  # typos are errors


def test_check_rejects_knobs_of_another_space() -> None:
    info = MEASURES["snip"]
    config = CONFIGS["snip"](network={"layers": 5}).model_dump(mode="json")
    assert info.check is not None and info.check("nb201", "cifar10", config) is not None
    assert info.check("darts", "cifar10", config) is None


def test_cpu_and_tiny_presets_score_the_network_fear_trains() -> None:
    for space in SPACES:
        for dataset in DATASETS:
            for preset_name, fear in (("cpu", fear_cpu), ("tiny", fear_tiny)):
                values = MEASURES["naswot"].presets[preset_name](space, dataset)
                assert values["network"] == fear(space, dataset)["network"]
                assert values["data"] == fear(space, dataset)["data"]
                assert "data" not in MEASURES["params"].presets[preset_name](space, dataset)


def test_catalog_never_imports_torch() -> None:
    code = "import sys, app.catalog.zero_cost; sys.exit(1 if 'torch' in sys.modules else 0)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
