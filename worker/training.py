"""The one training loop behind ``fear``, ``shortreg`` and ``full``.

Networks here are small, so per-step Python and host-device syncs cost as much as the maths:
the loop keeps the epoch's correct-count and loss sum as device tensors and reads them once per
epoch, sets the learning rate by assigning to the param group (no scheduler object), and draws
batches straight from the device-resident dataset.

Rules the methods rely on:
- SGD (momentum, Nesterov, weight decay on every trainable parameter, BN included), global
  grad-norm clip, cross-entropy.
- Cosine schedule stepped per iteration: the lr of step ``t`` is ``lr·½(1+cos(π·t/T))`` with
  ``T = horizon_epochs · steps_per_epoch``; after ``T`` steps it is exactly 0. The horizon may be
  longer than the epochs actually run (FEAR stage 1 uses its epoch cap, so the lr stays near its
  start value).
- Epoch train accuracy: sample-weighted over the epoch's minibatches, from the logits computed in
  train mode before each optimiser step, on the augmented data (no extra pass).
- DARTS auxiliary head: a model returning ``(logits, aux_logits)`` in train mode adds
  ``aux_weight · CE(aux_logits)``; accuracy and the reported loss use the main logits only.
- Drop path: a model exposing ``drop_path_prob`` gets ``drop_path · epoch / epochs`` at each epoch
  start (the DARTS ramp; 0 when ``drop_path`` is 0).
- Seeded: the caller seeds weight init (``torch.manual_seed``) and passes the generator that orders
  and augments the data; on CPU the same seed gives bitwise the same run.
- On CUDA: bf16 autocast and channels_last memory format (both skipped on other devices).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from worker.data.base import DeviceDataset

Clock = Callable[[], float]
StopReason = Literal["completed", "epoch_callback", "step_check", "window_check"]


@dataclass(frozen=True)
class SgdConfig:
    lr: float
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    grad_clip: float | None = 5.0  # max global L2 norm of the gradients; None = no clipping


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_acc: float  # fraction 0..1, sample-weighted over the epoch
    train_loss: float  # sample-weighted mean cross-entropy of the main head
    samples: int
    seconds: float  # wall time of this epoch
    elapsed_s: float  # wall time since the loop started, this epoch included
    lr_last: float  # learning rate of the epoch's last step


@dataclass
class TrainResult:
    epochs: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0  # all training time, a partial (interrupted) epoch included
    steps: int = 0
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


# Called after every epoch; returning True ends training (FEAR threshold, time budget).
EpochCallback = Callable[[EpochStats], bool]
# Called every ``check_every`` steps with the seconds elapsed since the loop started; True stops.
StepCheck = Callable[[float], bool]
# Called every ``window_every`` steps, once a full epoch's worth of steps has run, with the train
# accuracy over the last epoch's worth of steps (a sliding epoch average); True stops.
WindowCheck = Callable[[float], bool]


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine decay from ``base_lr`` at step 0 to exactly 0 at ``total_steps``."""
    progress = min(step, total_steps) / total_steps
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * progress))


def uses_cuda_fast_path(device: torch.device) -> bool:
    return device.type == "cuda"


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device``; on CUDA also switch to channels_last (faster convs with bf16)."""
    if uses_cuda_fast_path(device):
        torch.backends.cudnn.benchmark = True
        return model.to(device=device, memory_format=torch.channels_last)
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


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if uses_cuda_fast_path(device):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _split_outputs(output: torch.Tensor | tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(output, tuple | list):
        return output[0], (output[1] if len(output) > 1 else None)
    return output, None


def _set_drop_path(model: nn.Module, probability: float) -> None:
    if hasattr(model, "drop_path_prob"):
        model.drop_path_prob = probability


def train(
    model: nn.Module,
    data: DeviceDataset,
    *,
    epochs: int,
    batch_size: int,
    sgd: SgdConfig,
    generator: torch.Generator,
    horizon_epochs: int | None = None,
    augment: bool = True,
    cutout: int = 0,
    aux_weight: float = 0.0,
    drop_path: float = 0.0,
    on_epoch: EpochCallback | None = None,
    step_check: StepCheck | None = None,
    check_every: int = 8,
    window_check: WindowCheck | None = None,
    window_every: int = 4,
    clock: Clock = time.perf_counter,
    train_size: int | None = None,
) -> TrainResult:
    """Train the parameters of ``model`` that require grad for up to ``epochs`` epochs.

    ``horizon_epochs`` (default ``epochs``) is the cosine horizon. ``on_epoch`` may stop training
    at an epoch end, ``step_check`` every ``check_every`` steps and ``window_check`` every
    ``window_every`` steps (a partial epoch is then not in ``epochs``, but its steps are in
    ``steps`` and its time in ``seconds``). The model is left in train mode.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    if drop_path > 0 and not hasattr(model, "drop_path_prob"):
        raise ValueError("drop_path > 0 but the network has no drop_path_prob attribute (darts/nb301 only)")
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    # No trainable parameter (e.g. FEAR stage 2 unfreezing parameter-free cells only): forward
    # passes still measure the accuracy and move the BN running statistics.
    optimizer = (
        torch.optim.SGD(
            params,
            lr=sgd.lr,
            momentum=sgd.momentum,
            nesterov=sgd.nesterov and sgd.momentum > 0,
            weight_decay=sgd.weight_decay,
        )
        if params
        else None
    )
    steps_per_epoch = math.ceil((train_size or train_sample_count(data)) / batch_size)
    total_steps = (horizon_epochs or epochs) * steps_per_epoch
    channels_last = uses_cuda_fast_path(device)
    use_aux = aux_weight > 0

    # Per-step correct counts of the last epoch's worth of steps, kept only for ``window_check``
    # (device scalars: summing them is the one host sync per check).
    window: deque[tuple[torch.Tensor, int]] = deque(maxlen=steps_per_epoch)

    result = TrainResult()
    model.train()
    start = clock()
    callback_s = 0.0  # time spent in on_epoch (progress writes): not training time
    step = 0
    lr = sgd.lr
    for epoch_index in range(epochs):
        _set_drop_path(model, drop_path * epoch_index / epochs)
        epoch_start = clock()
        correct = torch.zeros((), dtype=torch.long, device=device)
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        seen = 0
        interrupted = False
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = data.train_batches(
            batch_size, generator, augment=augment, cutout=cutout
        )
        for x, y in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = cosine_lr(sgd.lr, step, total_steps)
            with _autocast(device), torch.set_grad_enabled(optimizer is not None):
                logits, aux_logits = _split_outputs(model(x))
                loss = F.cross_entropy(logits, y)
                objective = loss
                if use_aux and aux_logits is not None:
                    objective = loss + aux_weight * F.cross_entropy(aux_logits, y)
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                if sgd.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, sgd.grad_clip)
                optimizer.step()
            n = y.shape[0]
            hits = (logits.detach().argmax(dim=1) == y).sum()
            correct.add_(hits)
            loss_sum.add_(loss.detach().float() * n)
            seen += n
            step += 1
            if (
                step_check is not None
                and step % check_every == 0
                and step_check(clock() - start - callback_s)
            ):
                interrupted = True
                result.stopped = "step_check"
                break
            if window_check is not None:
                window.append((hits, n))
                if step % window_every == 0 and step >= steps_per_epoch:
                    hit_sum = torch.stack([h for h, _ in window]).sum().item()
                    if window_check(hit_sum / sum(k for _, k in window)):
                        interrupted = True
                        result.stopped = "window_check"
                        break
        if interrupted:
            break
        # The single host sync of the epoch (it also makes the epoch time exact on CUDA).
        accuracy = correct.item() / max(seen, 1)
        mean_loss = loss_sum.item() / max(seen, 1)
        now = clock()
        stats = EpochStats(
            epoch=epoch_index + 1,
            train_acc=accuracy,
            train_loss=mean_loss,
            samples=seen,
            seconds=now - epoch_start,
            elapsed_s=now - start - callback_s,
            lr_last=lr,
        )
        result.epochs.append(stats)
        if on_epoch is not None:
            stop = on_epoch(stats)
            callback_s += clock() - now
            if stop:
                result.stopped = "epoch_callback"
                break
    if uses_cuda_fast_path(device):
        torch.cuda.synchronize(device)
    result.seconds = clock() - start - callback_s
    result.steps = step
    result.final_lr = cosine_lr(sgd.lr, step, total_steps)
    return result


@torch.inference_mode()
def evaluate_batches(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> EvalStats:
    """Top-1 and mean cross-entropy in eval mode over ``batches``; one host sync at the end."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    seen = 0
    channels_last = uses_cuda_fast_path(device)
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            logits, _ = _split_outputs(model(x))
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
        correct.add_((logits.argmax(dim=1) == y).sum())
        loss_sum.add_(loss.float())
        seen += y.shape[0]
    model.train(was_training)
    if seen == 0:
        raise ValueError("evaluation got no samples")
    return EvalStats(accuracy=correct.item() / seen, loss=loss_sum.item() / seen, samples=seen)


def evaluate(model: nn.Module, data: DeviceDataset, batch_size: int = 1024) -> EvalStats:
    """Test top-1 of ``model`` on the dataset's test split (no augmentation)."""
    device = next(model.parameters()).device
    return evaluate_batches(model, data.test_batches(batch_size), device)


# ---------------------------------------------------------------------------------------------
# Plumbing shared by the training methods


# Builder options per space (the builders reject keys that do not apply to them).
_BUILDER_KEYS: dict[str, tuple[str, ...]] = {
    "nb201": ("C", "N"),
    "nats_sss": (),
    "darts": ("C", "layers", "auxiliary", "drop_path"),
    "nb301": ("C", "layers", "auxiliary", "drop_path"),
}


def builder_options(space: str, network: dict[str, Any]) -> dict[str, Any]:
    """The config's ``network`` block as builder options: unset knobs (None) are left to the
    space's defaults; the aux loss weight is a training setting, not a builder one."""
    keys = _BUILDER_KEYS.get(space, ())
    return {k: network[k] for k in keys if network.get(k) is not None}


def build_network(
    space: str, genotype: str, network: dict[str, Any], data: DeviceDataset, seed: int, device: torch.device
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
        options=builder_options(space, network),
    )
    return prepare_model(build(spec), device)


def aux_weight_of(network: dict[str, Any]) -> float:
    return float(network.get("auxiliary_weight") or 0.0) if network.get("auxiliary") else 0.0


def sgd_from(config: dict[str, Any], prefix: str = "") -> SgdConfig:
    """``SgdConfig`` from flat config keys (``stage1_lr`` ... or ``lr`` ...)."""
    return SgdConfig(
        lr=config[f"{prefix}lr"],
        momentum=config[f"{prefix}momentum"],
        nesterov=config[f"{prefix}nesterov"],
        weight_decay=config[f"{prefix}weight_decay"],
        grad_clip=config[f"{prefix}grad_clip"],
    )


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
