"""The one training loop behind ``fear``, ``shortreg`` and ``full``.

Networks here are small, so per-step Python and host-device syncs cost as much as the maths:
the loop keeps the epoch's correct-count and loss sum as device tensors and reads them once per
epoch, sets the learning rate by assigning to the param group (no scheduler object), and draws
batches straight from the device-resident dataset.

Rules the methods rely on:
- SGD (momentum, Nesterov, weight decay on every trainable parameter, BN included), global
  grad-norm clip, cross-entropy.
- Cosine schedule from ``lr`` to ``lr_min`` over ``horizon_epochs`` (default: the epochs run),
  either ``per_iteration`` (the lr of step ``t`` uses ``t / (horizon · steps_per_epoch)``) or
  ``per_epoch`` (constant within an epoch, epoch ``e`` uses ``e / horizon``: the authors'
  ``CosineAnnealingLR(T_max=epochs)`` stepped at epoch ends). The horizon may be longer than the
  epochs actually run (FEAR stage 1 uses its epoch cap, so the lr stays near its start value).
- Epoch train accuracy: sample-weighted over the epoch's minibatches, from the float32 logits
  computed in train mode before each optimiser step, on the augmented data (no extra pass).
- DARTS auxiliary head: a model returning ``(logits, aux_logits)`` in train mode adds
  ``aux_weight · CE(aux_logits)``; accuracy and the reported loss use the main logits only.
- Drop path: a model exposing ``drop_path_prob`` gets ``drop_path · epoch / epochs`` at each epoch
  start (the DARTS ramp; 0 when ``drop_path`` is 0).
- Mixup (``mixup_alpha`` > 0): each batch is mixed with a permutation of itself, weight
  λ ~ Beta(α, α); loss λ·CE(y) + (1-λ)·CE(y_perm); accuracy counts λ·hits(y) + (1-λ)·hits(y_perm).
- Precision: ``bf16`` = bf16 autocast and channels_last on CUDA (the fast path); ``fp32`` = float32
  with TF32 off for convs and matmuls (the authors' numerics). CPU runs are float32 either way.
- Seeded: the caller seeds weight init (``torch.manual_seed``) and passes the generator that orders
  and augments the data; on CPU the same seed gives bitwise the same run.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.catalog.base import NetworkOptions, Precision, Schedule, SgdOptions, StageOptions
from app.spaces import get_space_spec
from worker.data.base import DeviceDataset
from worker.spaces.nb201_stacked import StackedNB201
from worker.training_step import StaticStep

Clock = Callable[[], float]
StopReason = Literal["completed", "epoch_callback", "step_callback"]
SgdConfig = SgdOptions  # the optimiser settings the loop takes (one definition, torch-free)


@dataclass(frozen=True)
class TrainOptions:
    """Everything one call of ``train`` needs besides the model, the data and the callbacks."""

    epochs: int
    batch_size: int
    sgd: SgdOptions
    horizon_epochs: int | None = None  # cosine horizon; None = ``epochs``
    schedule: Schedule = "per_iteration"
    precision: Precision = "bf16"
    augment: bool = True
    cutout: int = 0
    normalize: bool = True  # False: undo the dataset's normalisation (raw [0, 1] inputs)
    aux_weight: float = 0.0
    drop_path: float = 0.0
    mixup_alpha: float = 0.0
    cuda_graph: bool = False  # the static step (worker.training_step): captured on CUDA, eager elsewhere
    train_size: int | None = None  # images per epoch if known (else counted once)

    @classmethod
    def of_stage(
        cls, stage: StageOptions, config: Any, *, horizon_epochs: int | None = None, top_only: bool = False
    ) -> TrainOptions:
        """Options for one stage of a training config (``app.catalog.training``). ``top_only``:
        FEAR stage 2, which trains without the auxiliary loss and drop path, as the authors did."""
        network: NetworkOptions = config.network
        return cls(
            epochs=stage.epochs,
            batch_size=stage.batch_size,
            sgd=stage.sgd,
            horizon_epochs=horizon_epochs,
            schedule=config.lr_schedule,
            precision=config.precision,
            augment=config.data.augment,
            cutout=config.data.cutout,
            normalize=config.data.normalize,
            aux_weight=0.0 if top_only else aux_weight_of(network),
            drop_path=0.0 if top_only else network.drop_path,
            mixup_alpha=config.mixup_alpha,
            cuda_graph=config.cuda_graph,
        )


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_acc: float  # fraction 0..1, sample-weighted over the epoch
    train_loss: float  # sample-weighted mean cross-entropy of the main head
    samples: int
    seconds: float  # wall time of this epoch
    elapsed_s: float  # wall time since the loop started, this epoch included
    lr_last: float  # learning rate of the epoch's last step
    # A stacked model (``StackedNB201``): each network's own accuracy and loss; ``train_acc`` and
    # ``train_loss`` are then their means.
    per_network_acc: tuple[float, ...] = ()
    per_network_loss: tuple[float, ...] = ()


@dataclass
class TrainResult:
    epochs: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0  # all training time, a partial (interrupted) epoch included
    steps: int = 0
    gpu_seconds: float | None = None  # CUDA-event time of the whole loop (None off CUDA)
    stopped: StopReason = "completed"
    final_lr: float = 0.0  # the lr the schedule gives after the last step taken

    @property
    def accuracies(self) -> list[float]:
        return [e.train_acc for e in self.epochs]

    @property
    def losses(self) -> list[float]:
        return [e.train_loss for e in self.epochs]


@dataclass(frozen=True)
class EvalStats:
    accuracy: float  # fraction 0..1
    loss: float
    samples: int


class StepInfo:
    """What ``on_step`` sees: the step count, the training seconds so far and, on request, the
    train top-1 over the last epoch's worth of steps (None before a whole epoch has run)."""

    def __init__(self, step: int, elapsed_s: float, window: Callable[[], float | None]) -> None:
        self.step = step
        self.elapsed_s = elapsed_s
        self._window = window

    def window_accuracy(self) -> float | None:
        return self._window()  # one host sync: ask only when needed


class TrainingCallbacks(Protocol):
    """The loop's one hook protocol. ``on_step`` runs every ``check_every`` steps (never if None),
    ``on_epoch`` after every epoch; either returns True to stop. ``keeps_window``: keep the per-step
    hit counts ``StepInfo.window_accuracy`` needs."""

    check_every: int | None
    keeps_window: bool

    def on_step(self, info: StepInfo) -> bool: ...

    def on_epoch(self, stats: EpochStats) -> bool: ...


class Callbacks:
    """No-op callbacks to subclass: override what you need."""

    check_every: int | None = None
    keeps_window: bool = False

    def on_step(self, info: StepInfo) -> bool:
        return False

    def on_epoch(self, stats: EpochStats) -> bool:
        return False


class ReportProgress(Callbacks):
    """Reports every epoch through ``report(epoch=..., epochs=..., train_acc=...)``; never stops."""

    def __init__(self, report: Callable[..., None], phase: str, epochs: int) -> None:
        self.report = report
        self.phase = phase
        self.epochs = epochs

    def on_epoch(self, stats: EpochStats) -> bool:
        self.report(phase=self.phase, epoch=stats.epoch, epochs=self.epochs, train_acc=stats.train_acc)
        return False


def cosine_lr(base_lr: float, step: int, total_steps: int, lr_min: float = 0.0) -> float:
    """Cosine decay from ``base_lr`` at step 0 to exactly ``lr_min`` at ``total_steps``."""
    progress = min(step, total_steps) / total_steps
    return lr_min + 0.5 * (base_lr - lr_min) * (1.0 + math.cos(math.pi * progress))


def scheduled_lr(sgd: SgdOptions, schedule: Schedule, step: int, steps_per_epoch: int, horizon: int) -> float:
    """The lr of step ``step`` (0-based) under ``schedule``."""
    if schedule == "per_epoch":
        return cosine_lr(sgd.lr, step // steps_per_epoch, horizon, sgd.lr_min)
    return cosine_lr(sgd.lr, step, horizon * steps_per_epoch, sgd.lr_min)


def uses_fast_path(device: torch.device, precision: Precision = "bf16") -> bool:
    """bf16 autocast + channels_last: only on CUDA and only with precision ``bf16``."""
    return device.type == "cuda" and precision == "bf16"


def set_float32_numerics(device: torch.device, precision: Precision) -> None:
    """``fp32`` turns TF32 off for convs and matmuls (reference numerics); ``bf16`` restores
    PyTorch's defaults for whatever runs outside autocast."""
    if device.type != "cuda":
        return
    reference = precision == "fp32"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = not reference


def prepare_model(model: nn.Module, device: torch.device, precision: Precision = "bf16") -> nn.Module:
    """Move to ``device``; on the CUDA fast path also switch to channels_last."""
    if uses_fast_path(device, precision):
        return model.to(device=device).to(memory_format=torch.channels_last)
    return model.to(device)


def make_generator(seed: int) -> torch.Generator:
    """The generator that orders and augments the data. It lives on the CPU whatever the training
    device: the datasets draw an epoch's random choices up front and move them, so a CPU and a
    CUDA run of one seed see the same batches."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts in elements."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def train_sample_count(data: DeviceDataset) -> int:
    """Images in the train split: the schedule needs steps-per-epoch before the first step."""
    known = getattr(data, "train_size", None) or data.info.get("train_size")
    if isinstance(known, int) and known > 0:
        return known
    # Unknown layout: count one un-augmented pass (slower, still exact).
    counter = make_generator(0)
    return sum(int(y.shape[0]) for _, y in data.train_batches(1024, counter, augment=False, cutout=0))


def _autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    if uses_fast_path(device, precision):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _split_outputs(
    output: torch.Tensor | tuple[torch.Tensor, ...],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(output, tuple | list):
        return output[0], (output[1] if len(output) > 1 else None)
    return output, None


def _set_drop_path(model: nn.Module, probability: float) -> None:
    if hasattr(model, "drop_path_prob"):
        setattr(model, "drop_path_prob", probability)  # noqa: B010 (a plain attribute, not a submodule)


def raw_inputs(data: DeviceDataset, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A map from the dataset's normalised images back to raw [0, 1] values (x·std + mean); the
    identity for a dataset without normalisation."""
    stats = data.info.get("normalisation")
    if not stats:
        return lambda x: x
    std = torch.tensor(stats["std"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
    mean = torch.tensor(stats["mean"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return lambda x: x * std + mean


class _Mixup:
    """Mixes each batch with a permutation of itself; λ from a NumPy generator seeded off the data
    generator (drawn only when mixup is on, so runs without it see the same data order)."""

    def __init__(self, alpha: float, generator: torch.Generator) -> None:
        self.alpha = alpha
        self.generator = generator
        self.rng = np.random.default_rng(int(torch.randint(2**31 - 1, (1,), generator=generator)))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        lam = float(self.rng.beta(self.alpha, self.alpha))
        order = torch.randperm(x.shape[0], generator=self.generator).to(x.device)
        return lam * x + (1.0 - lam) * x[order], order, lam


class SlidingHits:
    """Train hits over the last ``size`` steps, kept on the device as a ring buffer plus a running
    sum: a step adds one element-wise update (no host sync), a check reads one scalar (one sync),
    nothing is stacked. float64 holds integer counts exactly (and mixup's fractional hits)."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.size = size
        self.ring = torch.zeros(size, dtype=torch.float64, device=device)
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.counts = [0] * size
        self.count_total = 0
        self.pushed = 0

    def push(self, hits: torch.Tensor, n: int) -> None:
        pos = self.pushed % self.size
        value = hits.to(torch.float64)
        self.total.add_(value - self.ring[pos])
        self.ring[pos] = value
        self.count_total += n - self.counts[pos]
        self.counts[pos] = n
        self.pushed += 1

    def accuracy(self) -> float | None:
        """Top-1 over the window; None before a whole window of steps has run."""
        if self.pushed < self.size or self.count_total == 0:
            return None
        return float(self.total.item()) / self.count_total


def _cuda_events(device: torch.device) -> tuple[Any, Any] | None:
    """A (start, end) pair of CUDA timing events, the start recorded now; None off CUDA."""
    if device.type != "cuda":
        return None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    return start, end


def warm_up(model: nn.Module, data: DeviceDataset, options: TrainOptions, batch_sizes: Iterable[int]) -> None:
    """One untimed forward + backward per batch size on a copy of ``model``, so that cuDNN
    autotuning and lazy kernel loading are paid here and not inside a timed stage. The copy, its own
    generator and a forked RNG state keep the real run's weights and random streams untouched."""
    device = next(model.parameters()).device
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        scratch = copy.deepcopy(model)
        scratch.train()
        set_float32_numerics(device, options.precision)
        generator = make_generator(0)
        x, y = next(iter(data.train_batches(max(batch_sizes), generator, augment=False, cutout=0)))
        if not options.normalize:
            x = raw_inputs(data, device)(x)
        if uses_fast_path(device, options.precision):
            x = x.contiguous(memory_format=torch.channels_last)
        for size in sorted(set(batch_sizes), reverse=True):
            with _autocast(device, options.precision):
                output, _ = _split_outputs(scratch(x[:size]))
                loss = F.cross_entropy(output.float(), y[:size])
            loss.backward()
            scratch.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        del scratch


def train(
    model: nn.Module,
    data: DeviceDataset,
    options: TrainOptions,
    generator: torch.Generator,
    callbacks: TrainingCallbacks | None = None,
    *,
    clock: Clock = time.perf_counter,
) -> TrainResult:
    """Train the parameters of ``model`` that require grad for up to ``options.epochs`` epochs.

    ``callbacks`` may stop training at an epoch end (``on_epoch``) or every ``check_every`` steps
    (``on_step``; a partial epoch is then not in ``epochs``, but its steps are in ``steps`` and its
    time in ``seconds``). Time spent inside ``on_epoch`` is not training time. The model is left in
    train mode.
    """
    hooks: TrainingCallbacks = callbacks or Callbacks()
    if options.epochs < 1 or options.batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    if options.drop_path > 0 and not hasattr(model, "drop_path_prob"):
        raise ValueError("drop_path > 0 but the network has no drop_path_prob attribute (darts/nb301 only)")
    stacked = model if isinstance(model, StackedNB201) else None
    if stacked is not None and (options.mixup_alpha > 0 or options.aux_weight > 0 or hooks.keeps_window):
        raise ValueError(
            "a stacked model trains without mixup, an auxiliary head or a sliding accuracy window"
        )
    if options.cuda_graph and (stacked is not None or options.mixup_alpha > 0 or options.aux_weight > 0):
        raise ValueError("cuda_graph trains one network without mixup or an auxiliary head")
    sgd = options.sgd
    device = next(model.parameters()).device
    set_float32_numerics(device, options.precision)
    params = [p for p in model.parameters() if p.requires_grad]
    # No trainable parameter (e.g. FEAR stage 2 unfreezing parameter-free cells only): forward
    # passes still measure the accuracy and move the BN running statistics.
    # The captured step (worker.training_step) owns its own fused optimiser.
    static = (
        StaticStep(model, params, sgd, device, lambda: _autocast(device, options.precision))
        if options.cuda_graph and params
        else None
    )
    optimizer = (
        torch.optim.SGD(
            params,
            lr=sgd.lr,
            momentum=sgd.momentum,
            nesterov=sgd.nesterov and sgd.momentum > 0,
            weight_decay=sgd.weight_decay,
        )
        if params and static is None
        else None
    )
    steps_per_epoch = math.ceil((options.train_size or train_sample_count(data)) / options.batch_size)
    horizon = options.horizon_epochs or options.epochs
    channels_last = uses_fast_path(device, options.precision)
    use_aux = options.aux_weight > 0
    to_raw = None if options.normalize else raw_inputs(data, device)
    mixup = _Mixup(options.mixup_alpha, generator) if options.mixup_alpha > 0 else None

    # Correct counts of the last epoch's worth of steps, kept only for ``StepInfo.window_accuracy``.
    window = SlidingHits(steps_per_epoch, device) if hooks.keeps_window else None

    def window_accuracy() -> float | None:
        return window.accuracy() if window is not None else None

    def eager_step(
        x: torch.Tensor, y: torch.Tensor, lr: float, order: torch.Tensor | None, lam: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the default path; returns the step's loss (per network for a stack) and hits."""
        with _autocast(device, options.precision), torch.set_grad_enabled(optimizer is not None):
            output, aux_output = _split_outputs(model(x))
            logits = output.float()
            loss = F.cross_entropy(logits, y) if stacked is None else stacked.losses(logits, y)
            if order is not None:
                loss = lam * loss + (1.0 - lam) * F.cross_entropy(logits, y[order])
            objective = loss if stacked is None else loss.sum()  # each network's gradient is exactly its own
            if use_aux and aux_output is not None:
                aux_loss = F.cross_entropy(aux_output.float(), y)
                if order is not None:
                    aux_loss = lam * aux_loss + (1.0 - lam) * F.cross_entropy(aux_output.float(), y[order])
                objective = loss + options.aux_weight * aux_loss
        if optimizer is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if sgd.grad_clip is not None and stacked is not None:
                stacked.clip_grad_norm_(sgd.grad_clip)
            elif sgd.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, sgd.grad_clip)
            optimizer.step()
        predicted = logits.detach().argmax(dim=-1)
        hits = (predicted == y).sum(dim=-1)
        if order is not None:
            hits = lam * hits.double() + (1.0 - lam) * (predicted == y[order]).sum().double()
        return loss.detach().float(), hits

    result = TrainResult()
    model.train()
    events = _cuda_events(device)
    start = clock()
    callback_s = 0.0  # time spent in on_epoch (progress writes): not training time
    step = 0
    lr = sgd.lr
    for epoch_index in range(options.epochs):
        _set_drop_path(model, options.drop_path * epoch_index / options.epochs)
        epoch_start = clock()
        shape = (stacked.stack_size,) if stacked is not None else ()
        correct = torch.zeros(shape, dtype=torch.float64 if mixup else torch.long, device=device)
        loss_sum = torch.zeros(shape, dtype=torch.float32, device=device)
        seen = 0
        interrupted = False
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = data.train_batches(
            options.batch_size, generator, augment=options.augment, cutout=options.cutout
        )
        for x, y in batches:
            if to_raw is not None:
                x = to_raw(x)
            order, lam = None, 1.0
            if mixup is not None:
                x, order, lam = mixup(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = scheduled_lr(sgd, options.schedule, step, steps_per_epoch, horizon)
            if static is not None:
                loss, hits = static(x, y, lr)
            else:
                loss, hits = eager_step(x, y, lr, order, lam)
            n = y.shape[0]
            correct.add_(hits)
            loss_sum.add_(loss * n)
            seen += n
            step += 1
            if window is not None:
                window.push(hits, n)
            if (
                hooks.check_every
                and step % hooks.check_every == 0
                and hooks.on_step(StepInfo(step, clock() - start - callback_s, window_accuracy))
            ):
                interrupted = True
                result.stopped = "step_callback"
                break
        if interrupted:
            break
        # The single host sync of the epoch (it also makes the epoch time exact on CUDA).
        accs = [float(c) / max(seen, 1) for c in correct.reshape(-1).tolist()]
        means = [float(v) / max(seen, 1) for v in loss_sum.reshape(-1).tolist()]
        accuracy, mean_loss = sum(accs) / len(accs), sum(means) / len(means)
        now = clock()
        stats = EpochStats(
            epoch=epoch_index + 1,
            train_acc=accuracy,
            train_loss=mean_loss,
            samples=seen,
            seconds=now - epoch_start,
            elapsed_s=now - start - callback_s,
            lr_last=lr,
            per_network_acc=tuple(accs) if stacked is not None else (),
            per_network_loss=tuple(means) if stacked is not None else (),
        )
        result.epochs.append(stats)
        stop = hooks.on_epoch(stats)
        callback_s += clock() - now
        if stop:
            result.stopped = "epoch_callback"
            break
    if events is not None:
        events[1].record()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if events is not None:
        result.gpu_seconds = events[0].elapsed_time(events[1]) / 1000.0
    result.seconds = clock() - start - callback_s
    result.steps = step
    result.final_lr = scheduled_lr(sgd, options.schedule, step, steps_per_epoch, horizon)
    return result


@torch.inference_mode()
def evaluate_batches(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    precision: Precision = "bf16",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EvalStats:
    """Top-1 and mean cross-entropy in eval mode over ``batches``; one host sync at the end."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    seen = 0
    channels_last = uses_fast_path(device, precision)
    for x, y in batches:
        if transform is not None:
            x = transform(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, precision):
            output, _ = _split_outputs(model(x))
            logits = output.float()
            loss = F.cross_entropy(logits, y, reduction="sum")
        correct.add_((logits.argmax(dim=1) == y).sum())
        loss_sum.add_(loss.float())
        seen += y.shape[0]
    model.train(was_training)
    if seen == 0:
        raise ValueError("evaluation got no samples")
    return EvalStats(accuracy=correct.item() / seen, loss=loss_sum.item() / seen, samples=seen)


def evaluate(
    model: nn.Module,
    data: DeviceDataset,
    batch_size: int = 1024,
    *,
    precision: Precision = "bf16",
    normalize: bool = True,
) -> EvalStats:
    """Test top-1 of ``model`` on the dataset's test split (no augmentation; raw [0, 1] inputs
    when ``normalize`` is false, as in training)."""
    device = next(model.parameters()).device
    transform = None if normalize else raw_inputs(data, device)
    return evaluate_batches(model, data.test_batches(batch_size), device, precision, transform)


# ---------------------------------------------------------------------------------------------
# Plumbing shared by the training methods


def build_network(
    space: str,
    genotype: str,
    network: NetworkOptions,
    data: DeviceDataset,
    seed: int,
    device: torch.device,
    precision: Precision = "bf16",
) -> nn.Module:
    """Build the network with seeded initialisation (on CPU, so CPU and CUDA runs start alike)."""
    from worker.spaces import build
    from worker.spaces.base import NetworkSpec

    torch.manual_seed(seed)
    spec = NetworkSpec(
        space=space,
        genotype=genotype,
        num_classes=data.num_classes,
        input_size=data.input_size,
        options=get_space_spec(space).builder_options(network),
    )
    return prepare_model(build(spec), device, precision)


def aux_weight_of(network: NetworkOptions) -> float:
    return float(network.auxiliary_weight or 0.0) if network.auxiliary else 0.0
