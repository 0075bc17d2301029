"""The shared training loop: schedule, clipping, epoch accuracy, stops, aux head, drop path, seeds.

Also home of the small in-memory dataset and hand-made networks that test_fear.py reuses.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from worker.training import (
    Callbacks,
    Clock,
    EpochStats,
    SgdConfig,
    StepInfo,
    TrainingCallbacks,
    TrainOptions,
    TrainResult,
    cosine_lr,
    evaluate,
    make_generator,
    scheduled_lr,
    train,
)


def fit(
    model: nn.Module,
    data: Any,
    *,
    generator: torch.Generator,
    callbacks: TrainingCallbacks | None = None,
    clock: Clock = time.perf_counter,
    **options: Any,
) -> TrainResult:
    """``train`` with the options spelled as keywords."""
    return train(model, data, TrainOptions(**options), generator, callbacks, clock=clock)


class OnEpoch(Callbacks):
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_epoch(self, stats: EpochStats) -> bool:
        return bool(self.fn(stats))


# ---------------------------------------------------------------------------------------------
# Helpers shared with test_fear.py


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """Tiny nets gain nothing from intra-op threads, and on a busy machine spinning OpenMP threads
    slow them down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TensorDataset:
    """A DeviceDataset held in memory: shuffled minibatches, optional batched random flips.

    Classes are fixed random templates plus noise, so small nets learn them within a few epochs.
    """

    def __init__(
        self,
        train_size: int = 160,
        test_size: int = 80,
        num_classes: int = 4,
        input_size: int = 16,
        noise: float = 1.0,
        seed: int = 0,
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        templates = torch.randn(num_classes, 3, input_size, input_size, generator=gen)

        def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.randint(num_classes, (n,), generator=gen)
            x = templates[y] + noise * torch.randn(n, 3, input_size, input_size, generator=gen)
            return x, y

        self.train_x, self.train_y = split(train_size)
        self.test_x, self.test_y = split(test_size)
        self.name = "tensor"
        self.num_classes = num_classes
        self.input_size = input_size
        self.device = torch.device("cpu")
        self.info: dict[str, Any] = {"train_size": train_size, "test_size": test_size}

    def train_batches(
        self, batch_size: int, generator: torch.Generator, *, augment: bool = True, cutout: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(self.train_y.shape[0], generator=generator)
        for chunk in order.split(batch_size):
            x, y = self.train_x[chunk], self.train_y[chunk]
            if augment:
                flip = torch.rand(x.shape[0], generator=generator) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            yield x, y

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from zip(self.test_x.split(batch_size), self.test_y.split(batch_size), strict=True)

    def fixed_batch(self, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train_x[:size], self.train_y[:size]


class SmallNet(nn.Module):
    """Named like the NB201 network (stem, cells.i, lastact, classifier) but tiny."""

    def __init__(self, num_classes: int = 4, width: int = 8, cells: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.cells = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
            for _ in range(cells)
        )
        self.lastact = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU())
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(self.lastact(x).mean(dim=(2, 3)))


class AuxNet(SmallNet):
    """Returns (logits, aux_logits) in train mode, like DARTS with its auxiliary head; records the
    drop-path probability seen by each forward pass."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__(num_classes)
        self.auxiliary_head = nn.Linear(8, num_classes)
        self.drop_path_prob = 0.0
        self.seen_drop_path: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self.seen_drop_path.append(self.drop_path_prob)
        features = self.stem(x).mean(dim=(2, 3))
        logits = super().forward(x)
        return (logits, self.auxiliary_head(features)) if self.training else logits


def small_net(seed: int = 0, **kwargs: Any) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet(**kwargs)


# ---------------------------------------------------------------------------------------------
# Schedule


def test_cosine_starts_at_base_and_reaches_zero() -> None:
    assert cosine_lr(0.1, 0, 50) == 0.1
    assert cosine_lr(0.1, 50, 50) == 0.0
    assert cosine_lr(0.1, 25, 50) == pytest.approx(0.05)
    values = [cosine_lr(0.1, t, 50) for t in range(51)]
    assert all(a > b for a, b in itertools.pairwise(values))


def test_loop_cosine_ends_at_zero_and_follows_per_step_schedule() -> None:
    data = TensorDataset(train_size=50)
    result = fit(
        small_net(),
        data,
        epochs=3,
        batch_size=20,
        sgd=SgdConfig(lr=0.2),
        generator=make_generator(0),
    )
    steps_per_epoch = 3  # 20 + 20 + 10: the partial batch is a step
    assert result.steps == 9
    assert result.final_lr == 0.0
    for stats in result.epochs:
        last_step = stats.epoch * steps_per_epoch - 1
        assert stats.lr_last == pytest.approx(cosine_lr(0.2, last_step, 9))


def test_longer_horizon_keeps_the_lr_high() -> None:
    data = TensorDataset(train_size=40)
    result = fit(
        small_net(),
        data,
        epochs=2,
        horizon_epochs=200,
        batch_size=20,
        sgd=SgdConfig(lr=0.1),
        generator=make_generator(0),
    )
    assert result.epochs[-1].lr_last == pytest.approx(cosine_lr(0.1, 3, 400))
    assert result.final_lr > 0.0999


# ---------------------------------------------------------------------------------------------
# Clipping


def _one_step_update_norm(grad_clip: float | None) -> tuple[float, float]:
    """(global norm of the parameter update, unclipped gradient norm) for one SGD step at lr 1."""
    data = TensorDataset(train_size=32)
    model = small_net()
    before = copy.deepcopy(model)
    x, y = data.train_x, data.train_y
    reference = copy.deepcopy(model)
    nn.functional.cross_entropy(reference(x), y).backward()
    raw_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in reference.parameters()))
    sgd = SgdConfig(lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.0, grad_clip=grad_clip)
    fit(model, data, epochs=1, batch_size=32, sgd=sgd, generator=make_generator(0), augment=False)
    update = math.sqrt(
        sum(
            float((a - b).detach().pow(2).sum())
            for a, b in zip(model.parameters(), before.parameters(), strict=True)
        )
    )
    return update, raw_norm


def test_grad_clip_bounds_the_global_norm() -> None:
    update, raw_norm = _one_step_update_norm(grad_clip=0.05)
    assert raw_norm > 0.05  # the clip is active
    assert update == pytest.approx(0.05, rel=1e-4)


def test_without_clip_the_update_is_the_raw_gradient() -> None:
    update, raw_norm = _one_step_update_norm(grad_clip=None)
    assert update == pytest.approx(raw_norm, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# Epoch accuracy


def _train_mode_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    model.train()
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


def test_epoch_accuracy_uses_logits_before_the_step_on_a_fixed_batch() -> None:
    data = TensorDataset(train_size=64)
    model = small_net()
    snapshot = copy.deepcopy(model)
    result = fit(
        model,
        data,
        epochs=1,
        batch_size=64,
        sgd=SgdConfig(lr=0.5),
        generator=make_generator(0),
        augment=False,
    )
    expected = _train_mode_correct(snapshot, data.train_x, data.train_y) / 64
    assert result.epochs[0].train_acc == expected
    assert result.epochs[0].samples == 64
    # The step did change the weights, so post-step logits would give another count in general.
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), snapshot.parameters(), strict=True))


def test_epoch_accuracy_is_sample_weighted_over_minibatches() -> None:
    data = TensorDataset(train_size=50)
    model = small_net()
    snapshot = copy.deepcopy(model)
    # lr 0: weights stay put, so every batch's train-mode logits can be recomputed afterwards.
    sgd = SgdConfig(lr=0.0, momentum=0.0, nesterov=False, weight_decay=0.0)
    result = fit(model, data, epochs=1, batch_size=20, sgd=sgd, generator=make_generator(3), augment=False)
    batches = list(data.train_batches(20, make_generator(3), augment=False))
    assert [int(y.shape[0]) for _, y in batches] == [20, 20, 10]
    correct = sum(_train_mode_correct(snapshot, x, y) for x, y in batches)
    assert result.epochs[0].train_acc == correct / 50


def test_evaluate_matches_a_plain_eval_mode_count() -> None:
    data = TensorDataset()
    model = small_net()
    fit(model, data, epochs=2, batch_size=32, sgd=SgdConfig(lr=0.1), generator=make_generator(0))
    stats = evaluate(model, data, batch_size=33)
    assert model.training  # evaluate restores the mode
    model.eval()
    with torch.no_grad():
        expected = (model(data.test_x).argmax(1) == data.test_y).float().mean().item()
    assert stats.accuracy == pytest.approx(expected)
    assert stats.samples == 80


# ---------------------------------------------------------------------------------------------
# Stops and timing


class TickClock:
    """A clock that advances one second per reading: timings become call counts."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_on_epoch_can_stop_and_sees_every_epoch() -> None:
    data = TensorDataset()
    seen: list[EpochStats] = []

    def stop_after_two(stats: EpochStats) -> bool:
        seen.append(stats)
        return stats.epoch == 2

    result = fit(
        small_net(),
        data,
        epochs=5,
        batch_size=32,
        sgd=SgdConfig(lr=0.1),
        generator=make_generator(0),
        callbacks=OnEpoch(stop_after_two),
    )
    assert result.stopped == "epoch_callback"
    assert [s.epoch for s in seen] == [1, 2]
    assert result.epochs == seen


def test_step_check_interrupts_mid_epoch_with_elapsed_time() -> None:
    data = TensorDataset(train_size=160)
    calls: list[tuple[int, float]] = []
    steps = [0]

    class Check(Callbacks):
        check_every = 3

        def on_step(self, info: StepInfo) -> bool:
            calls.append((len(calls), info.elapsed_s))
            return len(calls) == 2

    result = fit(
        small_net(),
        data,
        epochs=3,
        batch_size=10,
        sgd=SgdConfig(lr=0.1),
        generator=make_generator(0),
        callbacks=Check(),
        clock=TickClock(),
    )
    del steps
    assert result.stopped == "step_callback"
    assert result.epochs == []  # interrupted inside the first epoch (16 steps)
    assert result.steps == 6
    # clock: start=1, epoch start=2, first check=3, second check=4 → elapsed 2 and 3
    assert [elapsed for _, elapsed in calls] == [2.0, 3.0]


def test_callback_time_is_not_training_time() -> None:
    data = TensorDataset(train_size=20)
    clock = TickClock()

    def slow_callback(stats: EpochStats) -> bool:
        clock.now += 100.0  # e.g. a slow progress write
        return False

    result = fit(
        small_net(),
        data,
        epochs=2,
        batch_size=20,
        sgd=SgdConfig(lr=0.1),
        generator=make_generator(0),
        callbacks=OnEpoch(slow_callback),
        clock=clock,
    )
    assert result.seconds < 10
    assert result.epochs[1].elapsed_s < 10


# ---------------------------------------------------------------------------------------------
# Auxiliary head, drop path, frozen parameters


def _aux_head_moves(aux_weight: float) -> bool:
    data = TensorDataset(train_size=32)
    torch.manual_seed(0)
    model = AuxNet()
    before = model.auxiliary_head.weight.detach().clone()
    sgd = SgdConfig(lr=0.1, weight_decay=0.0)
    result = fit(
        model,
        data,
        epochs=1,
        batch_size=32,
        sgd=sgd,
        generator=make_generator(0),
        aux_weight=aux_weight,
    )
    assert 0.0 <= result.epochs[0].train_acc <= 1.0
    return not torch.equal(before, model.auxiliary_head.weight)


def test_aux_loss_trains_the_aux_head_only_when_weighted() -> None:
    assert _aux_head_moves(0.4)
    assert not _aux_head_moves(0.0)


def test_aux_model_accuracy_comes_from_the_main_logits() -> None:
    data = TensorDataset(train_size=40)
    torch.manual_seed(1)
    model = AuxNet()
    snapshot = copy.deepcopy(model)
    result = fit(
        model,
        data,
        epochs=1,
        batch_size=40,
        sgd=SgdConfig(lr=0.3),
        generator=make_generator(0),
        augment=False,
        aux_weight=0.4,
    )
    snapshot.train()
    with torch.no_grad():
        main, _ = snapshot(data.train_x)
    assert result.epochs[0].train_acc == (main.argmax(1) == data.train_y).sum().item() / 40


def test_drop_path_ramps_linearly_per_epoch() -> None:
    data = TensorDataset(train_size=20)
    torch.manual_seed(0)
    model = AuxNet()
    fit(
        model,
        data,
        epochs=4,
        batch_size=20,
        sgd=SgdConfig(lr=0.1),
        generator=make_generator(0),
        drop_path=0.2,
    )
    assert model.seen_drop_path == pytest.approx([0.0, 0.05, 0.1, 0.15])


def test_drop_path_on_a_model_without_support_is_an_error() -> None:
    data = TensorDataset(train_size=20)
    with pytest.raises(ValueError, match="drop_path"):
        fit(
            small_net(),
            data,
            epochs=1,
            batch_size=20,
            sgd=SgdConfig(lr=0.1),
            generator=make_generator(0),
            drop_path=0.2,
        )


def test_parameters_without_grad_are_neither_updated_nor_decayed() -> None:
    data = TensorDataset(train_size=40)
    model = small_net()
    for param in model.stem.parameters():
        param.requires_grad_(False)
    before = copy.deepcopy(model)
    fit(model, data, epochs=2, batch_size=20, sgd=SgdConfig(lr=0.1), generator=make_generator(0))
    for (name, a), b in zip(model.named_parameters(), before.parameters(), strict=True):
        assert torch.equal(a, b) == name.startswith("stem."), name


# ---------------------------------------------------------------------------------------------
# Reproducibility


def _seeded_run(seed: int) -> tuple[list[float], list[torch.Tensor]]:
    data = TensorDataset()
    model = small_net(seed)
    result = fit(model, data, epochs=3, batch_size=32, sgd=SgdConfig(lr=0.1), generator=make_generator(seed))
    return result.accuracies + result.losses, [p.detach().clone() for p in model.parameters()]


def test_same_seed_is_bitwise_identical_on_cpu() -> None:
    stats_a, params_a = _seeded_run(7)
    stats_b, params_b = _seeded_run(7)
    assert stats_a == stats_b
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))
    stats_c, _ = _seeded_run(8)
    assert stats_c != stats_a


def test_network_learns_the_tensor_dataset() -> None:
    data = TensorDataset()
    result = fit(
        small_net(), data, epochs=6, batch_size=16, sgd=SgdConfig(lr=0.1), generator=make_generator(0)
    )
    assert result.accuracies[-1] > 0.7
    assert result.accuracies[-1] > result.accuracies[0]


def test_no_trainable_parameter_still_measures_accuracy_and_moves_bn_stats() -> None:
    data = TensorDataset(train_size=40)
    model = small_net()
    model.requires_grad_(False)
    before = copy.deepcopy(model)
    result = fit(model, data, epochs=1, batch_size=20, sgd=SgdConfig(lr=0.1), generator=make_generator(0))
    assert result.steps == 2 and 0.0 <= result.epochs[0].train_acc <= 1.0
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before.parameters(), strict=True))
    assert not torch.equal(model.stem[1].running_mean, before.stem[1].running_mean)


def test_window_check_sees_a_sliding_epoch_average_after_one_full_epoch() -> None:
    data = TensorDataset(train_size=160)  # 16 steps per epoch at batch 10
    accuracies: list[float] = []
    epoch_accs: list[float] = []

    class Window(Callbacks):
        check_every = 4
        keeps_window = True

        def on_step(self, info: StepInfo) -> bool:
            accuracy = info.window_accuracy()
            if accuracy is None:
                return False
            accuracies.append(accuracy)
            return len(accuracies) == 3

        def on_epoch(self, stats: EpochStats) -> bool:
            epoch_accs.append(stats.train_acc)
            return False

    result = fit(
        small_net(),
        data,
        epochs=5,
        batch_size=10,
        sgd=SgdConfig(lr=0.1),
        generator=make_generator(0),
        callbacks=Window(),
    )
    assert result.stopped == "step_callback"
    # First check at step 16 (one full epoch), then every 4 steps: stopped at step 24, mid-epoch 2.
    assert result.steps == 24 and len(result.epochs) == 1
    # At the epoch end the window is exactly that epoch.
    assert accuracies[0] == pytest.approx(epoch_accs[0])
    assert all(0.0 <= a <= 1.0 for a in accuracies)


# ---------------------------------------------------------------------------------------------
# Recipe options (issue 13)


def test_per_epoch_cosine_gives_the_authors_five_stage2_rates() -> None:
    # CosineAnnealingLR(T_max=5) stepped at epoch ends: constant within each epoch.
    result = fit(
        small_net(),
        TensorDataset(train_size=60),
        epochs=5,
        batch_size=20,
        sgd=SgdConfig(lr=0.1),
        generator=make_generator(0),
        schedule="per_epoch",
    )
    assert [round(s.lr_last, 4) for s in result.epochs] == [0.1, 0.0905, 0.0655, 0.0345, 0.0095]
    for epoch in range(5):  # 3 steps per epoch, all at the epoch's rate
        rates = {scheduled_lr(SgdConfig(lr=0.1), "per_epoch", epoch * 3 + k, 3, 5) for k in range(3)}
        assert rates == {result.epochs[epoch].lr_last}
    assert result.final_lr == 0.0


def test_per_iteration_is_the_default_and_decays_within_an_epoch() -> None:
    assert TrainOptions(epochs=1, batch_size=1, sgd=SgdConfig(lr=0.1)).schedule == "per_iteration"
    first, last = (scheduled_lr(SgdConfig(lr=0.1), "per_iteration", k, 3, 5) for k in (0, 2))
    assert first == 0.1 and last < first


def test_cosine_floor_is_reached_and_never_crossed() -> None:
    sgd = SgdConfig(lr=0.025, lr_min=0.001)
    values = [scheduled_lr(sgd, "per_iteration", t, 4, 3) for t in range(13)]
    assert values[0] == 0.025 and values[-1] == pytest.approx(0.001)
    assert min(values) >= 0.001 - 1e-12


def test_mixup_changes_the_run_and_stays_seeded() -> None:
    def run(alpha: float) -> list[float]:
        result = fit(
            small_net(0),
            TensorDataset(),
            epochs=2,
            batch_size=32,
            sgd=SgdConfig(lr=0.1),
            generator=make_generator(0),
            mixup_alpha=alpha,
        )
        assert all(0.0 <= a <= 1.0 for a in result.accuracies)
        return result.accuracies + result.losses

    assert run(0.2) == run(0.2)
    assert run(0.2) != run(0.0)


def test_raw_inputs_undo_the_dataset_normalisation() -> None:
    data = TensorDataset(train_size=20)
    data.info["normalisation"] = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.5]}
    seen: list[torch.Tensor] = []

    class Probe(SmallNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return super().forward(x)

    torch.manual_seed(0)
    fit(
        Probe(),
        data,
        epochs=1,
        batch_size=20,
        sgd=SgdConfig(lr=0.1),
        generator=make_generator(0),
        augment=False,
        normalize=False,
    )
    ((x, _),) = list(data.train_batches(20, make_generator(0), augment=False))
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, -1, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.5]).view(1, -1, 1, 1)
    assert torch.allclose(seen[0], x * std + mean)
