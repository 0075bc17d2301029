"""Network builders: reference sizes, module names, FEAR unfreeze rules, forward/backward on CPU."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from app.genotypes import darts as darts_genotype
from app.genotypes import nb201 as nb201_genotype
from worker.spaces import NetworkSpec, build, count_flops, count_params, unfreeze_default
from worker.spaces.darts import NetworkCIFAR
from worker.spaces.nb201 import TopologyCell
from worker.spaces.ops import FactorizedReduce, ResidualReduction

ALL_3X3 = nb201_genotype.from_index(1462).canonical
ALL_NONE = nb201_genotype.from_index(1651).canonical
V2 = darts_genotype.EXAMPLE


def nb201_net(genotype: str, classes: int = 10, size: int = 32, **options: int) -> nn.Module:
    return build(NetworkSpec("nb201", genotype, classes, size, options or None))


def megaflops(model: nn.Module, size: int) -> float:
    return round(count_flops(model, size) / 1e6, 2)


def all_op(op: str) -> dict:
    pairs = [[op, 0], [op, 1]] * 4
    return {"normal": pairs, "normal_concat": [2, 3, 4, 5], "reduce": pairs, "reduce_concat": [2, 3, 4, 5]}


# --- reference sizes ------------------------------------------------------------------------------


def _groups() -> list[tuple[int, int]]:
    return [(n3, n1) for n3 in range(7) for n1 in range(7 - n3)]


@pytest.mark.parametrize(("n3", "n1"), _groups())
def test_nb201_params_follow_the_formula_for_every_conv_count(n3: int, n1: int) -> None:
    # Fill the conv-free edges with every parameter-free op in turn: they must add nothing.
    free = itertools.cycle(["none", "skip_connect", "avg_pool_3x3"])
    ops = ["nor_conv_3x3"] * n3 + ["nor_conv_1x1"] * n1
    ops += [next(free) for _ in range(6 - len(ops))]
    genotype = nb201_genotype.to_string(tuple(ops))
    assert count_params(nb201_net(genotype)) == 73_306 + 243_040 * n3 + 28_000 * n1


@pytest.mark.parametrize(
    ("genotype", "classes", "size", "params", "mflops"),
    [
        (nb201_genotype.from_index(1).canonical, 10, 32, 802_426, 113.95),
        (ALL_NONE, 10, 32, 73_306, 7.78),
        (ALL_3X3, 10, 32, 1_531_546, 220.12),
        (ALL_NONE, 100, 32, 79_156, None),
        (ALL_3X3, 100, 32, 1_537_396, None),
        (ALL_NONE, 120, 16, 80_456, 1.95),
        (ALL_3X3, 120, 16, 1_538_696, 55.04),
    ],
)
def test_nb201_reference_sizes(
    genotype: str, classes: int, size: int, params: int, mflops: float | None
) -> None:
    model = nb201_net(genotype, classes, size)
    assert count_params(model) == params
    if mflops is not None:
        assert megaflops(model, size) == mflops


@pytest.mark.parametrize(
    ("genotype", "params", "mflops"), [("8:8:8:8:8", 11_714, 4.48), ("64:64:64:64:64", 713_674, 274.40)]
)
def test_nats_sss_reference_sizes(genotype: str, params: int, mflops: float) -> None:
    model = build(NetworkSpec("nats_sss", genotype, 10, 32))
    assert count_params(model) == params
    assert megaflops(model, 32) == mflops
    assert count_flops(model, 32) // 1000 == {"8:8:8:8:8": 4481, "64:64:64:64:64": 274_399}[genotype]


@pytest.mark.parametrize(("C", "layers", "params"), [(32, 8, 919_722), (36, 20, 3_349_342)])
def test_darts_v2_reference_sizes(C: int, layers: int, params: int) -> None:
    model = build(NetworkSpec("darts", V2, 10, 32, {"C": C, "layers": layers}))
    assert count_params(model) == params
    with_head = build(NetworkSpec("darts", V2, 10, 32, {"C": C, "layers": layers, "auxiliary": True}))
    # The auxiliary head is extra, and left out of the reported size as DARTS does.
    assert count_params(with_head) == params
    assert count_params(with_head, include_auxiliary=True) > params


def test_nb301_space_size_range() -> None:
    smallest = build(NetworkSpec("nb301", json.dumps(all_op("max_pool_3x3")), 10, 32))
    largest = build(NetworkSpec("nb301", json.dumps(all_op("sep_conv_5x5")), 10, 32))
    assert round(count_params(smallest) / 1e6, 2) == 0.39
    assert round(count_params(largest) / 1e6, 2) == 1.68


# --- structure and names ---------------------------------------------------------------------------


def test_nb201_module_names_and_reduction_positions() -> None:
    model = nb201_net(ALL_3X3)
    names = dict(model.named_children())
    assert list(names) == ["stem", "cells", "lastact", "global_pooling", "classifier"]
    assert len(model.cells) == 17
    reductions = [i for i, cell in enumerate(model.cells) if isinstance(cell, ResidualReduction)]
    assert reductions == [5, 11]
    assert isinstance(model.stem[0], nn.Conv2d) and isinstance(model.stem[1], nn.BatchNorm2d)
    assert len(model.stem) == 2  # no ReLU in the stem
    assert model.cells[16].edges[0].__class__.__name__ == "ReLUConvBN"
    small = nb201_net(ALL_3X3, C=8, N=2)
    assert len(small.cells) == 8 and small.classifier.in_features == 32


def test_sss_widths_come_from_the_genotype() -> None:
    model = build(NetworkSpec("nats_sss", "8:16:24:40:64", 10, 32))
    widths = [
        cell.conv_b[2].num_features if isinstance(cell, ResidualReduction) else None for cell in model.cells
    ]
    assert widths[1] == 16 and widths[3] == 40
    # cell 2 maps 16 → 24: the input-node skip becomes a 1x1 projection, not an identity.
    skip_edge = model.cells[2].edges[3]
    assert isinstance(skip_edge, FactorizedReduce) and skip_edge.stride == 1
    assert isinstance(model.cells[0].edges[3], nn.Identity)
    assert model.classifier.in_features == 64


@pytest.mark.parametrize(
    ("space", "options", "expected"),
    [
        ("nb201", None, ["cells.13", "cells.14", "cells.15", "cells.16", "lastact", "classifier"]),
        ("nb201", {"N": 1, "C": 4}, ["cells.4", "lastact", "classifier"]),
        ("nb201", {"N": 2, "C": 4}, ["cells.6", "cells.7", "lastact", "classifier"]),
        ("nb201", {"N": 3, "C": 4}, ["cells.9", "cells.10", "lastact", "classifier"]),
        ("nats_sss", None, ["cells.4", "lastact", "classifier"]),
        ("darts", {"C": 4, "layers": 8}, [f"cells.{i}" for i in range(3, 8)] + ["classifier"]),
        ("nb301", {"C": 4, "layers": 5, "auxiliary": True}, ["cells.2", "cells.3", "cells.4", "classifier"]),
    ],
)
def test_unfreeze_defaults_select_the_intended_modules(
    space: str, options: dict | None, expected: list
) -> None:
    genotype = {"nb201": ALL_3X3, "nats_sss": "8:8:8:8:8", "darts": V2, "nb301": V2}[space]
    identifiers = unfreeze_default(space, options)
    assert identifiers == expected
    model = build(NetworkSpec(space, genotype, 10, 32, options))
    names = [name for name, _ in model.named_parameters()]
    trainable = {name for name in names if any(i in name for i in identifiers)}
    for identifier in identifiers:  # each identifier matches parameters of its own module only
        own = {name for name in names if name.startswith(identifier + ".")}
        assert own and own == {name for name in names if identifier in name}
    assert trainable and len(trainable) < len(names)
    assert not any(name.startswith("auxiliary_head") for name in trainable)


# --- forward / backward --------------------------------------------------------------------------


def _forward_backward(model: nn.Module, size: int, classes: int) -> torch.Tensor:
    model.train()
    x = torch.randn(4, 3, size, size)
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (4, classes)
    loss = sum(o.logsumexp(1).mean() for o in (out if isinstance(out, tuple) else (out,)))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    return logits


NB201_SAMPLES = [
    ALL_3X3,
    ALL_NONE,
    nb201_genotype.from_index(0).canonical,
    nb201_genotype.from_index(1).canonical,
]
MIXED = {  # every op outside DARTS_V2, plus a node reading an intermediate node twice
    "normal": [
        ["none", 0],
        ["avg_pool_3x3", 1],
        ["sep_conv_5x5", 0],
        ["dil_conv_5x5", 2],
        ["skip_connect", 3],
        ["skip_connect", 3],
        ["none", 2],
        ["sep_conv_5x5", 4],
    ],
    "normal_concat": [3, 5],
    "reduce": [
        ["avg_pool_3x3", 0],
        ["none", 1],
        ["dil_conv_5x5", 1],
        ["sep_conv_5x5", 0],
        ["none", 3],
        ["skip_connect", 1],
        ["skip_connect", 0],
        ["dil_conv_3x3", 4],
    ],
    "reduce_concat": [2, 3, 4, 5],
}
DARTS_SAMPLES = [V2, json.dumps(MIXED)]


@pytest.mark.parametrize("size", [32, 16])
@pytest.mark.parametrize("genotype", NB201_SAMPLES)
def test_nb201_forward_backward(genotype: str, size: int) -> None:
    _forward_backward(nb201_net(genotype, 7, size, C=4, N=1), size, 7)


@pytest.mark.parametrize("size", [32, 16])
@pytest.mark.parametrize("genotype", ["8:8:8:8:8", "8:16:24:8:16", "64:8:8:16:8"])
def test_nats_sss_forward_backward(genotype: str, size: int) -> None:
    _forward_backward(build(NetworkSpec("nats_sss", genotype, 5, size)), size, 5)


@pytest.mark.parametrize("size", [32, 16])
@pytest.mark.parametrize("genotype", DARTS_SAMPLES)
def test_darts_forward_backward(genotype: str, size: int) -> None:
    model = build(NetworkSpec("darts", genotype, 6, size, {"C": 4, "layers": 3, "drop_path": 0.2}))
    _forward_backward(model, size, 6)


def test_topology_cell_handles_width_changes_for_every_op() -> None:
    for op in nb201_genotype.OPS:
        cell = TopologyCell((op,) * 6, c_in=6, c_out=10)
        out = cell(torch.randn(2, 6, 8, 8))
        assert out.shape == (2, 10, 8, 8)


def test_degenerate_cell_gives_zero_not_missing_gradients() -> None:
    model = nb201_net(ALL_NONE, C=4, N=1)
    _forward_backward(model, 16, 10)
    assert float(model.stem[0].weight.grad.abs().sum()) == 0.0


def test_darts_auxiliary_head_only_in_train_mode_and_only_at_32px() -> None:
    options = {"C": 4, "layers": 3, "auxiliary": True}
    model = build(NetworkSpec("nb301", V2, 10, 32, options))
    assert isinstance(model, NetworkCIFAR) and model.auxiliary
    logits, aux_logits = _forward_backward_tuple(model)
    assert logits.shape == aux_logits.shape == (2, 10)
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    small = build(NetworkSpec("nb301", V2, 10, 16, options))
    assert not small.auxiliary and small.auxiliary_head is None
    small.train()
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def _forward_backward_tuple(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    model.train()
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, tuple)
    (out[0].sum() + out[1].sum()).backward()
    return out


def test_drop_path_is_random_in_train_mode_only() -> None:
    torch.manual_seed(0)
    model = build(NetworkSpec("darts", V2, 10, 16, {"C": 4, "layers": 3}))
    x = torch.randn(8, 3, 16, 16)
    model.eval()
    model.drop_path_prob = 0.5
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        model.drop_path_prob = 0.0
        plain = model(x)
        model.drop_path_prob = 0.5
        assert not torch.allclose(model(x), plain)


def test_count_flops_restores_mode_and_removes_hooks() -> None:
    model = nb201_net(ALL_3X3, C=4, N=1)
    model.train()
    first = count_flops(model, 16)
    assert model.training
    assert count_flops(model, 16) == first
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("space", "options"),
    [
        ("nb201", {"C": 0}),
        ("nb201", {"channels": 16}),
        ("nb201", {"N": True}),
        ("nats_sss", {"C": 8}),
        ("darts", {"layers": 0}),
        ("darts", {"drop_path": 1.0}),
        ("darts", {"auxiliary": 1}),
        ("darts", {"aux": True}),
    ],
)
def test_bad_options_are_rejected(space: str, options: dict) -> None:
    genotype = {"nb201": ALL_3X3, "nats_sss": "8:8:8:8:8", "darts": V2}[space]
    with pytest.raises(ValueError, match="option"):
        build(NetworkSpec(space, genotype, 10, 32, options))


def test_unknown_space_and_bad_genotype_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown space"):
        build(NetworkSpec("nb101", ALL_3X3, 10, 32))
    with pytest.raises(ValueError, match="unknown space"):
        unfreeze_default("nb101")
    with pytest.raises(ValueError, match="node 1, edge 1"):
        build(NetworkSpec("nb201", ALL_3X3.replace("nor_conv_3x3~0|+", "conv9~0|+", 1), 10, 32))
