"""The ``cuda_graph`` training step (worker/training_step.py): static buffers, a tensor lr and fused SGD.

On a CPU nothing is captured, so these tests pin what the step computes: the run is bitwise the default
loop's (off CUDA the step keeps the default optimiser), the lr tensor follows the schedule,
each batch shape has its own buffers, and the option is part of the result's identity. On a CUDA
machine one more test checks that replaying the captured graph gives the eager step's result.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from app.catalog.base import SgdOptions
from app.catalog.methods import resolve
from tests.test_training import TensorDataset, single_thread  # noqa: F401 (the fixture is used)
from worker.spaces import nb201
from worker.training import Callbacks, StepInfo, TrainOptions, make_generator, train
from worker.training_step import StaticStep

GENOTYPE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
OPTIONS = TrainOptions(
    epochs=2,
    batch_size=32,
    sgd=SgdOptions(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, grad_clip=0.5),
    horizon_epochs=3,
    train_size=100,  # a partial last batch of 4: a second shape
)


def network() -> torch.nn.Module:
    torch.manual_seed(3)
    return nb201.build(GENOTYPE, 4, {"C": 8, "N": 1})


class Window(Callbacks):
    """FEAR's sliding check: reads the window accuracy every 2 steps."""

    check_every = 2
    keeps_window = True

    def __init__(self) -> None:
        self.seen: list[float | None] = []

    def on_step(self, info: StepInfo) -> bool:
        self.seen.append(info.window_accuracy())
        return False


def test_static_step_run_is_bitwise_the_default_loop_on_cpu() -> None:
    data = TensorDataset(train_size=100)
    default, static = network(), network()
    window_default, window_static = Window(), Window()
    a = train(default, data, OPTIONS, make_generator(0), window_default)
    b = train(static, data, dataclasses.replace(OPTIONS, cuda_graph=True), make_generator(0), window_static)
    assert a.accuracies == b.accuracies and a.losses == b.losses and a.steps == b.steps == 8
    assert window_default.seen == window_static.seen and window_static.seen[-1] is not None
    sa, sb = default.state_dict(), static.state_dict()
    assert all(torch.equal(sa[name], sb[name]) for name in sa), "weights and BN buffers equal bit for bit"


def test_the_lr_is_a_tensor_the_schedule_fills_and_each_shape_has_its_buffers() -> None:
    model = network()
    params = list(model.parameters())
    step = StaticStep(model, params, SgdOptions(lr=0.5, momentum=0.0, weight_decay=0.0), torch.device("cpu"))
    x, y = torch.randn(8, 3, 16, 16), torch.randint(4, (8,))
    before = [p.detach().clone() for p in params]
    loss, hits = step(x, y, 0.25)
    grads = [p.grad.detach().clone() for p in params]  # type: ignore[union-attr]
    # plain SGD at the filled lr, not the optimiser's constructed 0.5
    assert all(torch.allclose(p, b - 0.25 * g) for p, b, g in zip(params, before, grads, strict=True))
    assert step.lr.item() == 0.25 and loss.shape == () and 0 <= int(hits) <= 8
    step(x[:3], y[:3], 0.1)
    assert sorted(step.buffers) == [(3, 3, 16, 16), (8, 3, 16, 16)]
    assert step.captured_shapes == 0, "nothing is captured off CUDA"


def test_cuda_graph_is_part_of_the_identity_and_refuses_what_it_cannot_capture() -> None:
    plain = resolve("shortreg", "tiny", None, "nb201", "synthetic_cifar10", ["m"])
    graphed = resolve("shortreg", "tiny", {"cuda_graph": True}, "nb201", "synthetic_cifar10", ["m"])
    assert plain.config_hash != graphed.config_hash
    assert plain.config["cuda_graph"] is False and graphed.config["cuda_graph"] is True
    data = TensorDataset(train_size=32)
    mixup = dataclasses.replace(OPTIONS, cuda_graph=True, mixup_alpha=0.2)
    with pytest.raises(ValueError, match="cuda_graph"):
        train(network(), data, mixup, make_generator(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="capture needs a CUDA device (bench/gpu_check.py)")
def test_replaying_the_captured_step_gives_the_eager_steps_result() -> None:  # pragma: no cover
    device = torch.device("cuda")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    captured, eager = network().to(device), network().to(device)
    sgd = OPTIONS.sgd
    graph_step = StaticStep(captured, list(captured.parameters()), sgd, device)
    eager_step = StaticStep(eager, list(eager.parameters()), sgd, device)
    eager_step.capture = False
    gen = torch.Generator().manual_seed(0)
    for i in range(8):
        x, y = (
            torch.randn(16, 3, 16, 16, generator=gen).to(device),
            torch.randint(4, (16,), generator=gen).to(device),
        )
        graph_step(x, y, 0.1 / (i + 1))
        eager_step(x, y, 0.1 / (i + 1))
    assert graph_step.captured_shapes == 1
    for (name, a), b in zip(captured.state_dict().items(), eager.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert graph_step.lr.item() == pytest.approx(0.1 / 8)


def test_a_frozen_lower_network_trains_the_same_as_fear_stage_2_does() -> None:
    data = TensorDataset(train_size=100)
    models = []
    for graph in (False, True):
        model = network()
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith(("cells.4", "lastact", "classifier")))
        train(model, data, dataclasses.replace(OPTIONS, cuda_graph=graph), make_generator(1))
        models.append(model.state_dict())
    assert all(torch.equal(models[0][name], models[1][name]) for name in models[0])
    assert torch.equal(models[1]["stem.0.weight"], network().state_dict()["stem.0.weight"]), "frozen"
