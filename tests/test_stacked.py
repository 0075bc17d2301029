"""K NB201 networks trained as one stacked module give bitwise each network's standalone run on CPU.

The proof the GPU fleet issue asks for: same seed, same data order, the shared training loop with
Nesterov SGD, weight decay, a gradient clip that bites and a partial last batch; after training every
weight and BN buffer, every epoch's accuracy and loss, the test accuracy, and an epoch-end snapshot of
one network equal the standalone run exactly (``torch.equal``, no tolerance).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from app.catalog.base import SgdOptions
from tests.test_training import TensorDataset, single_thread  # noqa: F401 (the fixture is used)
from worker.spaces import nb201
from worker.spaces.nb201 import CellNetwork
from worker.spaces.nb201_stacked import StackedNB201, stack_key
from worker.training import Callbacks, EpochStats, TrainOptions, evaluate, make_generator, train

# Every op on some edge, edges that differ across the stack, 'none' and pooling included; none has
# skip_connect on edge 0->1 (see stack_key).
MIXED = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|none~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|",
)
SKIP_FIRST = (
    "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|",
    "|skip_connect~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_3x3~2|",
)
SEED = 7
OPTIONS = TrainOptions(
    epochs=2,
    batch_size=32,
    sgd=SgdOptions(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, grad_clip=0.5),
    horizon_epochs=4,
    train_size=100,  # 3 full batches and a partial one of 4
)


def networks(genotypes: Sequence[str], N: int = 1) -> list[CellNetwork]:
    """Each built as a standalone run builds it: seeded right before construction."""
    built = []
    for genotype in genotypes:
        torch.manual_seed(SEED)
        built.append(nb201.build(genotype, 4, {"C": 8, "N": N}))
    return built


class Snapshot(Callbacks):
    """Takes network ``index`` out of the stack at the end of epoch 1, as a finished FEAR stage 1 would."""

    def __init__(self, stack: StackedNB201, index: int, into: CellNetwork) -> None:
        self.stack, self.index, self.into = stack, index, into
        self.taken: dict[str, torch.Tensor] | None = None

    def on_epoch(self, stats: EpochStats) -> bool:
        if stats.epoch == 1:
            self.taken = copy.deepcopy(self.stack.copy_into(self.index, self.into).state_dict())
        return False


class Record(Callbacks):
    def __init__(self) -> None:
        self.after_first: dict[str, torch.Tensor] | None = None
        self.model: nn.Module | None = None

    def on_epoch(self, stats: EpochStats) -> bool:
        if stats.epoch == 1 and self.model is not None:
            self.after_first = copy.deepcopy(self.model.state_dict())
        return False


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [name for name in sa if not torch.equal(sa[name], sb[name])]
    assert not different, f"differs from the standalone run: {different[:5]}"


@pytest.mark.parametrize("genotypes", [MIXED, SKIP_FIRST], ids=["mixed-edges", "skip-on-edge-0"])
def test_stacked_training_is_bitwise_each_network_alone(genotypes: Sequence[str]) -> None:
    data = TensorDataset(train_size=100, test_size=40)
    alone = networks(genotypes)
    records = []
    results = []
    for net in alone:
        record = Record()
        record.model = net
        results.append(train(net, data, OPTIONS, make_generator(SEED), record))
        records.append(record)

    stack = StackedNB201(networks(genotypes))
    snapshot = Snapshot(stack, 1, networks(genotypes)[1])
    stacked = train(stack, data, OPTIONS, make_generator(SEED), snapshot)

    for k, (net, result) in enumerate(zip(alone, results, strict=True)):
        out = stack.copy_into(k, networks(genotypes)[k])
        assert_same_state(out, net)
        assert [e.per_network_acc[k] for e in stacked.epochs] == result.accuracies
        assert [e.per_network_loss[k] for e in stacked.epochs] == result.losses
        assert evaluate(out, data, 16, precision="fp32") == evaluate(net, data, 16, precision="fp32")
    assert stacked.steps == results[0].steps == 8
    # The epoch-end snapshot is network 1 exactly as its own run left it after epoch 1.
    assert snapshot.taken is not None and records[1].after_first is not None
    assert all(torch.equal(snapshot.taken[n], records[1].after_first[n]) for n in snapshot.taken)
    # The clip did bite (else the per-network clip would be untested): lr 0.1 at max-norm 0.5.
    assert any(r.epochs[0].train_loss != r.epochs[1].train_loss for r in results)


def test_clip_scales_each_network_by_its_own_norm() -> None:
    data = TensorDataset(train_size=32)
    alone = networks(MIXED[:3])
    stack = StackedNB201(networks(MIXED[:3]))
    x, y = next(data.train_batches(32, make_generator(0), augment=False))
    stack.losses(stack(x), y).sum().backward()
    norms = stack.clip_grad_norm_(1e-3)
    for k, net in enumerate(alone):
        nn.functional.cross_entropy(net(x), y).backward()
        expected = nn.utils.clip_grad_norm_(net.parameters(), 1e-3)
        assert torch.equal(norms[k], expected)
    assert len(set(norms.tolist())) == 3, "three architectures, three different norms"


def _graph_nodes(output: torch.Tensor) -> int:
    seen: set[int] = set()
    todo = [output.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        todo.extend(fn for fn, _ in node.next_functions)
    return len(seen)


def test_grouped_stack_has_a_kernel_count_independent_of_k_and_agrees_closely() -> None:
    data = TensorDataset(train_size=64)
    x, _ = next(data.train_batches(32, make_generator(0), augment=False))
    one = _graph_nodes(StackedNB201(networks(MIXED[:1]), grouped=True)(x))
    four = _graph_nodes(StackedNB201(networks(MIXED), grouped=True)(x))
    eight = _graph_nodes(StackedNB201(networks(MIXED * 2), grouped=True)(x))
    # Four more networks with the same four distinct cells add only their heads (the classifier
    # matmul and loss stay one per network); an edge costs one set of kernels per distinct op.
    head = 5  # per network: slices of features, weight and bias, the matmul and the transposed weight
    assert eight - four <= head * 4, (four, eight)
    assert eight < 8 * one / 2, f"8 separate networks have {8 * one} nodes; the stack {eight}"

    alone = networks(MIXED)
    grouped = StackedNB201(networks(MIXED), grouped=True)
    options = TrainOptions(epochs=1, batch_size=32, sgd=OPTIONS.sgd, train_size=64)
    train(grouped, data, options, make_generator(SEED))
    for k, net in enumerate(alone):
        train(net, data, options, make_generator(SEED))
        out = grouped.copy_into(k, networks(MIXED)[k]).state_dict()
        for name, value in net.state_dict().items():
            torch.testing.assert_close(out[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_stack_refuses_networks_it_cannot_train_exactly() -> None:
    with pytest.raises(ValueError, match="one skeleton"):
        StackedNB201([*networks(MIXED[:1]), *networks(MIXED[1:2], N=2)])
    with pytest.raises(ValueError, match="edge 0->1 is skip_connect"):
        StackedNB201(networks([MIXED[0], SKIP_FIRST[0]]))
    keys = {stack_key(nb201.nb201_genotype.parse_ops(g)) for g in MIXED}
    assert keys == {False} and stack_key(nb201.nb201_genotype.parse_ops(SKIP_FIRST[0]))
    data = TensorDataset(train_size=32)
    mixup = TrainOptions(epochs=1, batch_size=32, sgd=OPTIONS.sgd, mixup_alpha=0.2)
    with pytest.raises(ValueError, match="stacked model"):
        train(StackedNB201(networks(MIXED[:2])), data, mixup, make_generator(0))
