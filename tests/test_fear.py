"""FEAR, shortreg and full on a real (tiny) NB201 network and an in-memory dataset; the torch-free
catalog: configs, presets, unfreeze validation."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import torch
from torch import nn

from app.catalog.training import (
    METHODS,
    FearConfig,
    FullConfig,
    ShortregConfig,
    check_unfreeze,
    module_names,
)
from tests.test_training import TensorDataset, TickClock, single_thread
from worker.methods import fear, full, shortreg
from worker.methods.base import EvalRequest, MethodResult
from worker.spaces import build, unfreeze_default
from worker.spaces.base import NetworkSpec
from worker.training import EpochStats, evaluate

__all__ = ["single_thread"]  # the module-scoped fixture keeps these tests on one thread

GENOTYPE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
NETWORK = {"C": 4, "N": 1}
DATA = {"cutout": 0}


def make_data() -> TensorDataset:
    """Noisy enough that stage 1 takes a few epochs and 100 % train accuracy is out of reach."""
    return TensorDataset(noise=2.5)


class LocalContext:
    """RunContext for tests: one in-memory dataset, progress kept in a list, and the batch's
    ratio-to-fastest cap (``ratio`` × the fastest reported time-to-threshold) or a fixed budget."""

    def __init__(self, data: TensorDataset, ratio: float | None = None, budget: float | None = None) -> None:
        self.device = torch.device("cpu")
        self.data = data
        self.ratio = ratio
        self.budget = budget
        self.fastest: float | None = None
        self.reported: list[float] = []
        self.events: list[dict[str, Any]] = []
        self.on_report: Any = None

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> TensorDataset:
        return self.data

    def progress(self, **fields: Any) -> None:
        self.events.append(fields)

    def stage1_budget_s(self) -> float | None:
        if self.budget is not None:
            return self.budget
        if self.ratio is None or self.fastest is None:
            return None
        return self.ratio * self.fastest

    def report_stage1_time(self, seconds: float) -> None:
        self.reported.append(seconds)
        self.fastest = seconds if self.fastest is None else min(self.fastest, seconds)
        if self.on_report is not None:
            self.on_report()


def fear_config(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "threshold": 0.5,
        "max_stage1_epochs": 6,
        "stage1_batch_size": 16,
        "stage2_epochs": 2,
        "stage2_batch_size": 32,
        "network": NETWORK,
        "data": DATA,
    }
    values.update(overrides)
    return FearConfig.model_validate(values).model_dump(mode="json")


def request(method: str, config: dict[str, Any], seed: int = 0) -> EvalRequest:
    return EvalRequest(
        evaluation_id=1,
        method=method,
        space="nb201",
        genotype=GENOTYPE,
        dataset="tensor",
        seed=seed,
        config=config,
    )


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[nn.Module]:
    """The networks the methods build, so tests can inspect them after a run."""
    models: list[nn.Module] = []

    def capture(module: Any) -> None:
        original = module.build_network

        def wrapper(*args: Any, **kwargs: Any) -> nn.Module:
            model = original(*args, **kwargs)
            models.append(model)
            return model

        monkeypatch.setattr(module, "build_network", wrapper)

    capture(fear)
    capture(shortreg)
    return models


def run_fear(ctx: LocalContext, config: dict[str, Any], seed: int = 0, **kwargs: Any) -> MethodResult:
    return fear.run(request("fear", config, seed), ctx, **kwargs)


# ---------------------------------------------------------------------------------------------
# Stage 1


@pytest.fixture(scope="module")
def trajectory() -> list[float]:
    """Stage-1 epoch accuracies of the test architecture when the threshold is out of reach."""
    result = run_fear(LocalContext(make_data()), fear_config(threshold=1.0))
    assert result.status == "unmet"
    return result.info["stage1"]["acc"]


def test_unmet_when_the_cap_is_hit(trajectory: list[float]) -> None:
    ctx = LocalContext(make_data())
    result = run_fear(ctx, fear_config(threshold=1.0))
    assert result.status == "unmet"
    assert result.score is None
    assert result.info["stage1_epochs"] == 6
    assert len(result.info["stage1"]["acc"]) == 6
    assert result.cost_s == result.timings["stage1_s"] > 0
    assert "stage2_s" not in result.timings
    assert ctx.reported == []  # an unmet run must not tighten the batch's cap
    assert "1.0" in result.reason


def test_stage1_stops_at_the_first_epoch_reaching_the_threshold(trajectory: list[float]) -> None:
    # Pick a threshold first crossed at a later epoch k (0-based) of the known trajectory.
    k = next(i for i in range(2, len(trajectory)) if trajectory[i] > max(trajectory[:i]))
    threshold = (max(trajectory[:k]) + trajectory[k]) / 2
    ctx = LocalContext(make_data())
    result = run_fear(ctx, fear_config(threshold=threshold))
    assert result.status == "done"
    accuracies = result.info["stage1"]["acc"]
    assert result.info["stage1_epochs"] == k + 1 == len(accuracies)
    assert accuracies == trajectory[: k + 1]
    assert all(a < threshold for a in accuracies[:-1]) and accuracies[-1] >= threshold
    assert ctx.reported == [result.timings["stage1_s"]]
    phases = [(e["phase"], e["epoch"]) for e in ctx.events]
    assert phases == [("stage1", i + 1) for i in range(k + 1)] + [("stage2", 1), ("stage2", 2)]


def test_threshold_checked_between_epoch_ends_stops_stage1_mid_epoch(trajectory: list[float]) -> None:
    # The same threshold as above: at epoch ends only, stage 1 runs whole epochs; checked every 2
    # steps on a sliding epoch average, it may stop before that epoch ends, never after.
    k = next(i for i in range(2, len(trajectory)) if trajectory[i] > max(trajectory[:i]))
    threshold = (max(trajectory[:k]) + trajectory[k]) / 2
    whole = run_fear(LocalContext(make_data()), fear_config(threshold=threshold))
    ctx = LocalContext(make_data())
    sliding = run_fear(ctx, fear_config(threshold=threshold, threshold_check_steps=2))
    assert sliding.status == "done" and ctx.reported == [sliding.timings["stage1_s"]]
    assert whole.info["stage1_epochs_exact"] == whole.info["stage1_epochs"] == k + 1
    assert 1.0 <= sliding.info["stage1_epochs_exact"] <= k + 1
    assert sliding.info["stage1_steps"] <= whole.info["stage1_steps"]
    # Complete epochs before the stop are the same epochs as without the option.
    assert sliding.info["stage1"]["acc"] == trajectory[: sliding.info["stage1_epochs"]]
    again = run_fear(LocalContext(make_data()), fear_config(threshold=threshold, threshold_check_steps=2))
    assert again.score == sliding.score and again.info["stage1_steps"] == sliding.info["stage1_steps"]


def test_a_later_added_option_at_its_default_keeps_the_config_hash() -> None:
    from app.catalog.methods import config_hash, hashed_form, resolve

    resolved = resolve("fear", "cpu", None, "nb201", "cifar10_folder", ["methods", 0])
    before = hashed_form(resolved.config, FearConfig)
    assert "threshold_check_steps" not in before and "normalize" not in before["data"]
    # What a FEAR evaluation stored before the option existed hashes to the same identity.
    assert resolved.config_hash == config_hash("fear", before)
    assert resolved.config["threshold_check_steps"] is None  # the stored config stays complete
    changed = resolve("fear", "cpu", {"threshold_check_steps": 4}, "nb201", "cifar10_folder", ["m"])
    assert changed.config_hash != resolved.config_hash


# ---------------------------------------------------------------------------------------------
# Stage 2


def test_stage2_trains_exactly_the_unfrozen_parameters(captured: list[nn.Module]) -> None:
    ctx = LocalContext(make_data())
    after_stage1: dict[str, torch.Tensor] = {}
    ctx.on_report = lambda: after_stage1.update(copy.deepcopy(captured[0].state_dict()))
    result = run_fear(ctx, fear_config(threshold=0.3, unfreeze=["cells.4", "classifier"]))
    assert result.status == "done"
    model = captured[0]
    for name, param in model.named_parameters():
        trainable = name.startswith(("cells.4.", "classifier."))
        assert param.requires_grad == trainable, name
        assert torch.equal(param, after_stage1[name]) != trainable, name
    # Frozen BN layers keep updating their running statistics (model stays in train mode).
    assert not torch.equal(model.stem[1].running_mean, after_stage1["stem.1.running_mean"])
    trainable_count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert result.info["trainable_params"] == trainable_count
    assert result.info["trainable_ratio"] == pytest.approx(trainable_count / total)
    assert 0 < result.info["trainable_ratio"] < 1


def test_default_unfreeze_comes_from_the_space_rule(captured: list[nn.Module]) -> None:
    result = run_fear(LocalContext(make_data()), fear_config(threshold=0.3))
    assert (
        result.info["unfreeze"] == unfreeze_default("nb201", NETWORK) == ["cells.4", "lastact", "classifier"]
    )
    owners = {
        ".".join(name.split(".")[:2]) if name.startswith("cells.") else name.split(".")[0]
        for name, param in captured[0].named_parameters()
        if param.requires_grad
    }
    assert owners == {"cells.4", "lastact", "classifier"}


def test_score_is_the_last_stage2_epoch_accuracy() -> None:
    # A high stage-2 lr makes the stage-2 curve fall at the end: the last epoch is not the best.
    config = fear_config(threshold=0.3, stage2_epochs=4, stage2_lr=3.0, stage2_batch_size=16)
    result = run_fear(LocalContext(make_data()), config)
    stage2 = result.info["stage2"]["acc"]
    assert len(stage2) == 4
    assert result.score == stage2[-1]
    assert 0.0 <= result.score <= 1.0
    assert result.cost_s == pytest.approx(result.timings["stage1_s"] + result.timings["stage2_s"])
    for key in ("stage1_final_loss", "stage2_final_loss", "time_to_threshold_s", "threshold"):
        assert key in result.info
    assert result.info["stage2_scored_epoch"] == 4
    # The search preset's rule on the same run: the best stage-2 epoch.
    best = run_fear(LocalContext(make_data()), {**config, "score_epoch": "best"})
    assert best.info["stage2"]["acc"] == stage2
    assert best.score == max(stage2) > stage2[-1]
    assert best.info["stage2_scored_epoch"] == stage2.index(max(stage2)) + 1


def test_unknown_unfreeze_identifier_fails_before_training() -> None:
    ctx = LocalContext(make_data())
    with pytest.raises(ValueError, match=r"cells\.13"):
        run_fear(ctx, fear_config(unfreeze=["cells.13", "classifier"]))
    assert ctx.events == []


def test_identifiers_match_whole_name_components() -> None:
    model = build(NetworkSpec("nb201", GENOTYPE, 4, 16, {"C": 4, "N": 5}))
    names = fear.unfreeze_only(model, ["cells.1"])
    assert names and all(n.startswith("cells.1.") for n in names)


def test_darts_stage1_uses_aux_and_drop_path_stage2_neither(captured: list[nn.Module]) -> None:
    from app.genotypes.darts import EXAMPLE

    config = fear_config(
        threshold=0.01,  # any learning at all: this test is about what each stage trains
        max_stage1_epochs=2,
        stage2_epochs=1,
        network={"C": 4, "layers": 3, "auxiliary": True, "drop_path": 0.2},
    )
    ctx = LocalContext(TensorDataset(train_size=48, test_size=16, input_size=32, noise=0.5))
    after_stage1: dict[str, torch.Tensor] = {}
    ctx.on_report = lambda: after_stage1.update(copy.deepcopy(captured[0].state_dict()))
    darts_request = EvalRequest(1, "fear", "darts", EXAMPLE, "tensor", 0, config)
    result = fear.run(darts_request, ctx)
    model = captured[0]
    assert result.status == "done"
    assert result.info["unfreeze"] == ["cells.2", "classifier"]
    assert model.drop_path_prob == 0.0  # stage 2 trains without drop path
    # The aux head trained in stage 1 (weight 0.4) but is frozen and unchanged in stage 2.
    for name, param in model.auxiliary_head.named_parameters():
        assert not param.requires_grad
        assert torch.equal(param, after_stage1[f"auxiliary_head.{name}"])
    assert all(p.requires_grad for p in model.cells[2].parameters())


# ---------------------------------------------------------------------------------------------
# The ratio-to-fastest cap


def test_ratio_cap_rejects_a_slow_stage1_mid_epoch() -> None:
    ctx = LocalContext(make_data(), ratio=1.0)
    fast = run_fear(ctx, fear_config(threshold=0.3), clock=TickClock())
    assert fast.status == "done" and ctx.fastest == fast.timings["stage1_s"]
    # The same network with a higher threshold needs more epochs: over 1.0 × fastest it is cut off.
    slow = run_fear(ctx, fear_config(threshold=0.99), clock=TickClock())
    assert slow.status == "rejected"
    assert slow.score is None
    assert slow.timings == {"stage1_s": slow.cost_s}
    assert slow.cost_s > ctx.fastest
    # Stopped by a mid-epoch check: within one check interval of the budget, no stage 2.
    assert slow.cost_s <= ctx.fastest + fear.CHECK_EVERY_STEPS + 2
    assert "stage2" not in slow.info
    assert ctx.reported == [fast.timings["stage1_s"]]


def test_a_generous_ratio_lets_the_candidate_finish() -> None:
    ctx = LocalContext(make_data(), ratio=100.0)
    run_fear(ctx, fear_config(threshold=0.3), clock=TickClock())
    result = run_fear(ctx, fear_config(threshold=0.5), clock=TickClock())
    assert result.status == "done"


def test_budget_smaller_than_one_epoch_stops_inside_it() -> None:
    result = run_fear(LocalContext(make_data(), budget=1.5), fear_config(), clock=TickClock())
    assert result.status == "rejected"
    assert result.info["stage1_epochs"] == 0


def _watch(budget: float, budget_check: str) -> fear.Stage1Watch:
    config = FearConfig.model_validate(fear_config(threshold=0.9, budget_check=budget_check))
    return fear.Stage1Watch(config, LocalContext(make_data(), budget=budget))


def _epoch(elapsed_s: float, train_acc: float = 0.1) -> EpochStats:
    return EpochStats(1, train_acc, 1.0, 10, elapsed_s, elapsed_s, 0.1)


def test_search_cap_is_checked_at_epoch_ends_with_greater_or_equal() -> None:
    at_end = _watch(10.0, "epoch_end")
    assert at_end.check_every is None  # no mid-epoch budget checks
    assert not at_end.on_epoch(_epoch(9.99)) and not at_end.rejected
    assert at_end.on_epoch(_epoch(10.0)) and at_end.rejected  # elapsed == budget: rejected
    steps = _watch(10.0, "steps")
    assert steps.check_every == fear.CHECK_EVERY_STEPS
    assert not steps.on_epoch(_epoch(10.0))  # the default rule: strictly over the budget
    assert steps.on_epoch(_epoch(10.01)) and steps.rejected
    # Over budget and at the threshold at the same epoch end: rejected (the budget comes first).
    both = _watch(10.0, "epoch_end")
    assert both.on_epoch(_epoch(10.0, train_acc=0.95)) and both.rejected and not both.met


def test_search_cap_lets_the_epoch_finish_before_rejecting() -> None:
    config = fear_config(budget_check="epoch_end")
    result = run_fear(LocalContext(make_data(), budget=1.5), config, clock=TickClock())
    assert result.status == "rejected" and result.info["stage1_epochs"] == 1


def test_fastest_time_also_from_misses_only_when_asked() -> None:
    quiet = LocalContext(make_data())
    assert run_fear(quiet, fear_config(threshold=1.0)).status == "unmet" and quiet.reported == []
    ctx = LocalContext(make_data())
    result = run_fear(ctx, fear_config(threshold=1.0, fastest_includes_misses=True))
    assert result.status == "unmet" and ctx.reported == [result.timings["stage1_s"]]
    assert result.stage1_s == result.timings["stage1_s"]


# ---------------------------------------------------------------------------------------------
# Reproducibility


def test_same_seed_same_score_and_stored_config_reproduces() -> None:
    config = fear_config(threshold=0.4)
    first = run_fear(LocalContext(make_data()), config, seed=3)
    stored = json.loads(json.dumps(config))  # what the database keeps
    again = run_fear(LocalContext(make_data()), stored, seed=3)
    assert first.score == again.score
    assert first.info["stage1"] == again.info["stage1"]
    assert first.info["stage2"] == again.info["stage2"]
    other = run_fear(LocalContext(make_data()), config, seed=4)
    assert other.info["stage1"] != first.info["stage1"]


# ---------------------------------------------------------------------------------------------
# shortreg and full


def regular_config(model: type, **overrides: Any) -> dict[str, Any]:
    values = {"epochs": 4, "batch_size": 16, "network": NETWORK, "data": DATA, **overrides}
    return model.model_validate(values).model_dump(mode="json")


def test_shortreg_scores_the_best_epoch() -> None:
    ctx = LocalContext(make_data())
    result = shortreg.run(request("shortreg", regular_config(ShortregConfig)), ctx)
    accuracies = result.info["train"]["acc"]
    assert len(accuracies) == 4
    assert result.score == max(accuracies)
    assert result.info["best_epoch"] == accuracies.index(max(accuracies)) + 1
    assert result.cost_s == result.timings["train_s"] > 0
    assert [e["epoch"] for e in ctx.events] == [1, 2, 3, 4]


def test_full_reports_test_accuracy(captured: list[nn.Module]) -> None:
    data = make_data()
    result = full.run(request("full", regular_config(FullConfig)), LocalContext(data))
    model = captured[0]
    model.eval()
    with torch.no_grad():
        expected = (model(data.test_x).argmax(1) == data.test_y).float().mean().item()
    assert result.score == pytest.approx(expected)
    assert result.score == evaluate(model, data).accuracy
    assert result.info["final_train_acc"] == result.info["train"]["acc"][-1]
    assert "final_train_loss" in result.info and result.info["test_samples"] == 80
    assert result.cost_s == pytest.approx(result.timings["train_s"] + result.timings["test_s"])


# ---------------------------------------------------------------------------------------------
# Catalog (torch-free)


@pytest.mark.parametrize(
    ("space", "options", "expected_cells"),
    [
        ("nb201", {}, 17),
        ("nb201", {"N": 1}, 5),
        ("nb201", {"N": 2}, 8),
        ("nats_sss", {}, 5),
        ("darts", {}, 8),
    ],
)
def test_module_names_match_the_builders(space: str, options: dict, expected_cells: int) -> None:
    genotypes = {
        "nb201": GENOTYPE,
        "nats_sss": "8:8:16:16:16",
        "darts": (
            "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
        ),
    }
    build_options = {**options, "C": 8} if space != "nats_sss" else {}
    model = build(NetworkSpec(space, genotypes[space], 10, 32, build_options))
    actual = {name for name, _ in model.named_modules() if name.count(".") <= 1 and name}
    predicted = set(module_names(space, options))
    assert predicted <= actual
    assert len([n for n in predicted if n.startswith("cells.")]) == expected_cells
    assert check_unfreeze(space, options, unfreeze_default(space, options)) is None


def test_check_unfreeze_messages() -> None:
    assert check_unfreeze("nb201", {}, ["cells.13", "lastact", "classifier"]) is None
    message = check_unfreeze("nb201", {"N": 1}, ["cells.13"])
    assert message is not None and "cells.0..cells.4" in message
    assert check_unfreeze("nb201", {}, ["cells.1 ; rm"]) is not None
    assert check_unfreeze("nb201", {}, []) is not None


def test_presets_validate_for_every_space_and_dataset() -> None:
    datasets = ("cifar10", "cifar100", "imagenet16_120", "synthetic_cifar10", "cifar10_folder")
    for info in METHODS.values():
        for preset_name, preset in info.presets.items():
            for space in info.spaces:
                for dataset in datasets:
                    config = info.config_model.model_validate(preset(space, dataset)).model_dump(mode="json")
                    assert info.check is not None
                    assert info.check(space, dataset, config) is None, (
                        info.name,
                        preset_name,
                        space,
                        dataset,
                    )


def test_paper_preset_values() -> None:
    cifar100 = METHODS["fear"].presets["paper"]("nb201", "cifar100")
    assert (cifar100["threshold"], cifar100["stage2_batch_size"], cifar100["stage2_epochs"]) == (0.3, 512, 5)
    darts = FearConfig.model_validate(METHODS["fear"].presets["paper"]("darts", "cifar10"))
    assert (darts.threshold, darts.max_stage1_epochs, darts.stage2_batch_size, darts.stage2_lr) == (
        0.6,
        100,
        96,
        0.025,
    )
    nb201_full = FullConfig.model_validate(METHODS["full"].presets["paper"]("nb201", "cifar10"))
    assert (nb201_full.epochs, nb201_full.batch_size) == (200, 256)


def test_paper_presets_follow_the_authors_recipe() -> None:
    from app.catalog.methods import resolve

    for method in ("fear", "shortreg", "full"):
        paper = resolve(method, "paper", None, "nb201", "cifar10", ["m"]).config
        assert (paper["lr_schedule"], paper["precision"], paper["deterministic"]) == (
            "per_epoch",
            "fp32",
            True,
        )
        for preset in ("cpu", "tiny"):  # the fast presets keep the recorded benchmarks' recipe
            fast = resolve(method, preset, None, "nb201", "cifar10", ["m"]).config
            assert (fast["lr_schedule"], fast["precision"]) == ("per_iteration", "bf16")
    imagenet = resolve("fear", "paper", None, "nb201", "imagenet16_120", ["m"]).config
    data = imagenet["data"]
    assert (data["augment"], data["normalize"], data["cutout"]) == (False, False, 0)
    assert (imagenet["threshold"], imagenet["stage2_epochs"]) == (0.2, 10)
    nb201_aug = resolve("fear", "paper-nb201-augment", None, "nb201", "imagenet16_120", ["m"]).config
    assert nb201_aug["data"]["augment"] and nb201_aug["data"]["normalize"]
    darts = FearConfig.model_validate(resolve("fear", "paper", None, "darts", "cifar10", ["m"]).config)
    assert (darts.network.C, darts.network.layers) == (36, 8)
    assert darts.stage1.sgd.lr_min == darts.stage2.sgd.lr_min == 0.001
    nb301 = resolve("full", "paper", None, "nb301", "cifar10", ["m"]).config
    assert (nb301["mixup_alpha"], nb301["lr_min"]) == (0.2, 1e-8)
    assert resolve("full", "paper", None, "darts", "cifar10", ["m"]).config["mixup_alpha"] == 0.0
    search = resolve("fear", "paper-search", None, "nb201", "cifar10", ["m"]).config
    assert (search["stage2_epochs"], search["stage2_batch_size"], search["data"]["cutout"]) == (10, 1024, 0)
    assert (search["score_epoch"], search["budget_check"], search["fastest_includes_misses"]) == (
        "best",
        "epoch_end",
        True,
    )
    baseline = resolve("shortreg", "paper-search", None, "nb201", "cifar10", ["m"]).config
    assert (baseline["epochs"], baseline["batch_size"], baseline["data"]["cutout"]) == (50, 1024, 0)


def test_precision_is_recorded_and_switchable() -> None:
    from app.catalog.methods import resolve

    fp32 = resolve("fear", "paper", None, "nb201", "cifar10", ["m"])
    bf16 = resolve("fear", "paper", {"precision": "bf16"}, "nb201", "cifar10", ["m"])
    assert (fp32.config["precision"], bf16.config["precision"]) == ("fp32", "bf16")
    assert fp32.config_hash != bf16.config_hash
    schema = FearConfig.model_json_schema()["properties"]["precision"]
    assert set(schema["enum"]) == {"fp32", "bf16"}


class RecordingData(TensorDataset):
    def __init__(self) -> None:
        super().__init__(noise=2.5)
        self.augment_flags: set[bool] = set()

    def train_batches(
        self, batch_size: int, generator: torch.Generator, *, augment: bool = True, cutout: int = 0
    ):
        self.augment_flags.add(augment)
        return super().train_batches(batch_size, generator, augment=augment, cutout=cutout)


def test_imagenet16_paper_preset_trains_without_augmentation() -> None:
    from app.catalog.methods import resolve

    overrides = {
        "threshold": 0.3,
        "max_stage1_epochs": 3,
        "stage1_batch_size": 16,
        "stage2_epochs": 1,
        "network": NETWORK,
    }
    config = resolve("fear", "paper", overrides, "nb201", "imagenet16_120", ["m"]).config
    data = RecordingData()
    result = run_fear(LocalContext(data), config)
    assert result.status in ("done", "unmet")
    assert data.augment_flags == {False}


def test_config_limits_and_cross_checks() -> None:
    with pytest.raises(ValueError):
        FearConfig.model_validate({"threshold": 0})
    with pytest.raises(ValueError):
        FearConfig.model_validate({"max_stage1_epochs": 501})
    with pytest.raises(ValueError):
        FearConfig.model_validate({"stage1_momentum": 0.0})  # Nesterov needs momentum
    with pytest.raises(ValueError):
        ShortregConfig.model_validate({"epochs": 10, "typo": 1})
    check = METHODS["fear"].check
    assert check is not None
    config = FearConfig.model_validate({"network": {"layers": 8}}).model_dump(mode="json")
    where, message = check("nb201", "cifar10", config) or ([], "")
    assert where == ["network", "layers"] and "nb201" in message and "C, N" in message
    config = FearConfig.model_validate({"unfreeze": ["cells.20"]}).model_dump(mode="json")
    assert check("nb201", "cifar10", config) == (["unfreeze"], check_unfreeze("nb201", {}, ["cells.20"]))
    config = FearConfig.model_validate({"network": {"auxiliary": True}}).model_dump(mode="json")
    assert check("darts", "imagenet16_120", config) is not None
