"""run_zero_cost: one build and one batch per architecture, a fresh copy per measure, honest records."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from tests.zero_cost_support import LocalContext, requests_for
from worker.methods.zero_cost import measures, run_zero_cost
from worker.methods.zero_cost.common import Score
from worker.methods.zero_cost.jacob_cov import NO_PATH
from worker.methods.zero_cost.naswot import SINGULAR
from worker.methods.zero_cost.registry import Implementation
from worker.methods.zero_cost.runner import network_options
from worker.methods.zero_cost.state import InitialState
from worker.methods.zero_cost.synflow import OVERFLOW
from worker.spaces.base import NetworkSpec

MEASURES = measures()
ALL = list(MEASURES)
INPUT = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TimesZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class CountingBuilder:
    """Toy architectures: "a" (one conv block), "b" (two), "dead" (the input is multiplied by 0
    right after the stem, like an all-`none` cell), "huge" (a float64 synflow overflow)."""

    def __init__(self) -> None:
        self.calls: list[NetworkSpec] = []

    def __call__(self, spec: NetworkSpec) -> nn.Module:
        self.calls.append(spec)
        width = (spec.options or {}).get("C", 4)
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1, bias=False)]
        if spec.genotype == "dead":
            layers.append(TimesZero())
        layers += [nn.BatchNorm2d(width), nn.ReLU()]
        if spec.genotype in ("b", "huge"):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, spec.num_classes)]
        if spec.genotype == "huge":
            layers += [nn.Linear(spec.num_classes, spec.num_classes, bias=False) for _ in range(12)]
        model = nn.Sequential(*layers)
        if spec.genotype == "huge":
            with torch.no_grad():
                for layer in model[-12:]:
                    layer.weight.fill_(1e30)
        return model


def run(methods, *, genotype: str = "b", seed: int = 0, builder: CountingBuilder | None = None, ctx=None):
    ctx = ctx or LocalContext(input_size=INPUT)
    builder = builder or CountingBuilder()
    requests = requests_for(methods, genotype=genotype, seed=seed)
    return run_zero_cost(requests, ctx, builder=builder), ctx, builder


def scores(results) -> list[float]:
    return [r.score for r in results]


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_all_together_equals_each_alone() -> None:
    together, _ctx, builder = run(ALL)
    assert len(builder.calls) == 1
    for name, result in zip(ALL, together, strict=True):
        (alone,), _, _ = run([name])
        assert same(result.score, alone.score), name


def test_order_of_computation_does_not_change_any_value() -> None:
    forward, _, _ = run(ALL)
    backward, _, _ = run(list(reversed(ALL)))
    for a, b in zip(forward, reversed(backward), strict=True):
        assert same(a.score, b.score)


def test_same_seed_same_values_and_the_seed_matters() -> None:
    first, _, _ = run(ALL, seed=3)
    second, _, _ = run(ALL, seed=3)
    other, _, _ = run(ALL, seed=4)
    assert all(same(a, b) for a, b in zip(scores(first), scores(second), strict=True))
    by_name = dict(zip(ALL, zip(scores(first), scores(other), strict=True), strict=True))
    for name in ("synflow", "snip", "naswot"):
        assert by_name[name][0] != by_name[name][1], name
    assert by_name["params"][0] == by_name["params"][1]


def test_a_measure_never_sees_another_measures_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    def vandal(model: nn.Module, batch) -> Score:
        # Leave gradients, changed weights and changed BN statistics behind.
        images, labels = batch
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                tensor.add_(1)
        return Score(0.0)

    monkeypatch.setitem(
        MEASURES, "plain", dataclasses.replace(MEASURES["plain"], implementation=Implementation(vandal))
    )
    victims = ["snip", "grasp", "fisher", "synflow", "synflow_bn", "naswot", "jacob_cov", "grad_norm"]
    clean, _, _ = run(victims)
    dirty, _, _ = run([name for v in victims for name in ("plain", v)])
    assert scores(clean) == scores(dirty)[1::2]


def test_initial_state_restores_weights_buffers_and_drops_grads() -> None:
    model = CountingBuilder()(NetworkSpec("nb201", "b", 10, INPUT))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = InitialState(model)
    model(torch.randn(4, 3, INPUT, INPUT)).sum().backward()  # grads and BN statistics change
    with torch.no_grad():
        next(model.parameters()).mul_(-3)
    state.restore()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_every_architecture_sees_the_same_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def recorder(model: nn.Module, batch) -> Score:
        seen[current] = (batch[0].clone(), batch[1].clone())
        return Score(1.0)

    monkeypatch.setitem(
        MEASURES, "snip", dataclasses.replace(MEASURES["snip"], implementation=Implementation(recorder))
    )
    for current in ("a", "b", "dead"):
        run(["snip"], genotype=current)
    assert seen["a"][0].shape[0] == 64
    for other in ("b", "dead"):
        assert torch.equal(seen["a"][0], seen[other][0]) and torch.equal(seen["a"][1], seen[other][1])


def test_one_batch_per_size_and_one_dataset_load() -> None:
    results, ctx, _ = run(["snip", "naswot", "grad_norm", "synflow", "params", "flops", "jacob_cov"])
    (dataset,) = ctx.datasets.values()
    assert sorted(dataset.fixed_batch_calls) == [(64, 0), (128, 0)]
    assert len(ctx.dataset_calls) == 1
    by_name = dict(
        zip(["snip", "naswot", "grad_norm", "synflow", "params", "flops", "jacob_cov"], results, strict=True)
    )
    assert by_name["snip"].info["batch_size"] == 64
    assert by_name["naswot"].info["batch_size"] == 128
    assert by_name["synflow"].info["batch_size"] is None
    assert all(r.info["seed"] == 0 for r in results)


def test_results_carry_timings_and_json_safe_info() -> None:
    results, ctx, _ = run(ALL)
    for name, result in zip(ALL, results, strict=True):
        assert result.status == "done"
        own = result.timings.get("gradients_s", result.timings.get("restore_s"))
        assert own is not None, name
        assert result.cost_s == pytest.approx(own + result.timings["measure_s"])
        assert result.timings["measure_s"] > 0
        assert {"shared_build_s", "shared_batch_s", "shared_dataset_s"} <= set(result.timings)
        assert float(result.info["raw"]) == result.score or math.isnan(result.score), name
        json.dumps(result.info, allow_nan=False)
    assert len(ctx.progress_calls) == len(ALL)
    synflow = results[ALL.index("synflow")]
    assert synflow.info["log10"] == pytest.approx(math.log10(synflow.score))


def test_gradient_measures_share_one_gradient_pass_per_batch() -> None:
    names = ["snip", "grad_norm", "naswot", "plain", "fisher", ("snip", {"batch_size": 32})]
    results, _, _ = run(names)
    reused = [r.info.get("gradients_reused") for r in results]
    assert reused == [False, True, None, True, True, False]
    assert results[0].timings["gradients_s"] == results[1].timings["gradients_s"]
    assert results[0].score != results[5].score  # another batch size, another gradient pass


def test_degenerate_architecture_is_stored_non_finite_with_reasons() -> None:
    names = ["synflow", "synflow_bn", "jacob_cov", "naswot", "snip"]
    results, _, _ = run(names, genotype="dead")
    by_name = dict(zip(names, results, strict=True))
    assert by_name["synflow"].score == 0.0 and by_name["synflow"].finite  # a legitimate bottom score
    assert by_name["synflow_bn"].score == 0.0 and by_name["synflow_bn"].finite
    assert by_name["synflow"].info["log10"] == "-inf"
    assert math.isnan(by_name["jacob_cov"].score)
    assert not by_name["jacob_cov"].finite and by_name["jacob_cov"].reason == NO_PATH
    assert by_name["naswot"].score == -math.inf
    assert not by_name["naswot"].finite and by_name["naswot"].reason == SINGULAR
    assert by_name["snip"].finite and by_name["snip"].reason is None
    for result in results:
        json.dumps(result.info, allow_nan=False)


def test_synflow_overflow_is_non_finite_with_reason() -> None:
    (result,), _, _ = run(["synflow"], genotype="huge")
    assert result.score == math.inf
    assert not result.finite and result.reason == OVERFLOW
    assert result.info["log10"] == "inf"


def test_network_configs_are_grouped_and_built_once_each() -> None:
    wide = {"network": {"C": 6}}
    methods = [("snip", wide), "snip", ("synflow", wide), "synflow"]
    results, _, builder = run(methods)
    assert sorted((spec.options or {}).get("C", 4) for spec in builder.calls) == [4, 6]
    (wide_snip,), _, _ = run([("snip", wide)])
    (narrow_snip,), _, _ = run(["snip"])
    assert results[0].score == wide_snip.score and results[1].score == narrow_snip.score
    assert results[0].score != results[1].score


def test_requests_of_different_architectures_are_refused() -> None:
    requests = requests_for(["snip"], seed=0) + requests_for(["grasp"], seed=1)
    with pytest.raises(ValueError, match="one architecture"):
        run_zero_cost(requests, LocalContext(input_size=INPUT), builder=CountingBuilder())


def test_builder_options_follow_the_space() -> None:
    config = {
        "network": {
            "C": 8,
            "N": None,
            "layers": None,
            "auxiliary": False,
            "auxiliary_weight": 0.4,
            "drop_path": 0.0,
        }
    }
    assert network_options("nb201", config) == {"C": 8}
    assert network_options("darts", config) == {"C": 8, "auxiliary": False, "drop_path": 0.0}
    assert network_options("nats_sss", {"network": {"C": None}}) == {}
    with pytest.raises(ValueError, match=r"network\.N"):
        network_options("darts", {"network": {"N": 2}})


def test_one_failing_measure_does_not_sink_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: nn.Module, batch) -> Score:
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setitem(
        MEASURES, "grasp", dataclasses.replace(MEASURES["grasp"], implementation=Implementation(broken))
    )
    results, _, _ = run(["snip", "grasp", "synflow"])
    assert [r.status for r in results] == ["done", "failed", "done"]
    assert "out of memory" in results[1].reason
    clean, _, _ = run(["snip", "synflow"])
    assert scores(clean) == [results[0].score, results[2].score]


def test_static_measures_load_no_data() -> None:
    results, ctx, _ = run(["params", "flops", "synflow"])
    assert all(r.status == "done" for r in results)
    assert ctx.dataset_calls == []


def test_per_architecture_batches_are_seeded_by_the_genotype() -> None:
    from worker.methods.zero_cost.runner import architecture_seed

    calls = {}
    for genotype in ("a", "b"):
        _, ctx, _ = run([("snip", {"batch_per_architecture": True})], genotype=genotype)
        (dataset,) = ctx.datasets.values()
        calls[genotype] = dataset.fixed_batch_calls
    assert calls == {"a": [(64, architecture_seed(0, "a"))], "b": [(64, architecture_seed(0, "b"))]}
    assert architecture_seed(0, "a") != architecture_seed(0, "b")
    _, ctx, _ = run(["snip"], genotype="a")  # default: the comparison's one batch
    assert next(iter(ctx.datasets.values())).fixed_batch_calls == [(64, 0)]


def test_augmented_batch_is_drawn_from_an_augmented_train_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.zero_cost_support import LocalDataset

    flags: list[bool] = []

    def train_batches(self, size: int, generator: torch.Generator, *, augment: bool = True, cutout: int = 0):
        flags.append(augment)
        order = torch.randperm(self._images.shape[0], generator=generator)[:size]
        yield self._images[order], self._labels[order]

    monkeypatch.setattr(LocalDataset, "train_batches", train_batches)
    results, ctx, _ = run([("snip", {"batch_augment": True}), "snip"])
    assert flags == [True]
    assert next(iter(ctx.datasets.values())).fixed_batch_calls == [(64, 0)]  # the plain request's
    assert all(r.finite for r in results)
