"""FEAR (Dey et al., arXiv 2106.04010): rank architectures by the features they learn early.

Stage 1 trains the whole network until the epoch-average train top-1 reaches the threshold
(checked at epoch ends; cosine horizon = the epoch cap). Stage 2 freezes every parameter except
those inside the unfreeze modules and trains them with a fresh optimiser, model still in train
mode (frozen BN layers keep updating their running statistics). Score = the last stage-2 epoch's
train top-1 as a fraction 0..1.

Outcomes: ``done``; ``unmet`` (threshold not reached within the cap, score None, time recorded);
``rejected`` (stage 1 ran past the batch's ratio-to-fastest budget, checked every few steps and at
epoch ends, or with ``budget_check: epoch_end`` at epoch ends only with ``>=``, as the authors'
search did; no stage 2). The budget is read at the start and re-read at each epoch end, since other
evaluations of the batch may report faster times meanwhile. ``score_epoch: best`` scores the best
stage-2 epoch instead of the last (the search runs).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from app.catalog.base import NetworkOptions
from app.catalog.training import FearConfig
from app.settings import get_settings
from app.spaces import get_space_spec
from worker.data.base import DeviceDataset
from worker.methods.base import EvalRequest, MethodResult, RunContext
from worker.training import (
    Callbacks,
    Clock,
    EpochStats,
    ReportProgress,
    StepInfo,
    TrainOptions,
    build_network,
    count_parameters,
    make_generator,
    train,
    train_sample_count,
    warm_up,
)

# Steps between mid-epoch budget checks: a clock read each, so cheap; small enough that a slow
# candidate is stopped long before its epoch ends.
CHECK_EVERY_STEPS = 4


def _components_match(name: str, identifier: str) -> bool:
    """Whether ``identifier`` occurs in the dotted ``name`` as whole components
    ('cells.1' is in 'cells.1.edge.weight' but not in 'cells.13.edge.weight')."""
    parts, wanted = name.split("."), identifier.split(".")
    width = len(wanted)
    return any(parts[i : i + width] == wanted for i in range(len(parts) - width + 1))


def unfreeze_only(model: nn.Module, identifiers: list[str]) -> list[str]:
    """Freeze every parameter, then unfreeze those inside the named modules; returns the names of
    the trainable parameters. An identifier naming no module and no parameter is an error (a
    module without parameters, e.g. an all-skip NB201 cell, is fine)."""
    module_names = [name for name, _ in model.named_modules() if name]
    unknown = [
        ident
        for ident in identifiers
        if not any(_components_match(n, ident) for n in module_names)
        and not any(_components_match(n, ident) for n, _ in model.named_parameters())
    ]
    if unknown:
        raise ValueError(f"unfreeze identifiers {unknown} match no module of the network")
    trainable = []
    for name, param in model.named_parameters():
        keep = any(_components_match(name, ident) for ident in identifiers)
        param.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return trainable


def default_unfreeze(space: str, network: NetworkOptions) -> list[str]:
    return get_space_spec(space).default_unfreeze(network)


@runtime_checkable
class StepBudget(Protocol):
    """A run context that also caps stage 1 in optimizer steps (``options.ratio_basis = "steps"``;
    worker/runtime.py ServiceContext). Contexts without it cap in seconds only."""

    def stage1_budget_steps(self) -> float | None: ...

    def report_stage1_time(self, seconds: float, steps: int | None = None) -> None: ...


def _step_budget(ctx: RunContext) -> float | None:
    return ctx.stage1_budget_steps() if isinstance(ctx, StepBudget) else None


def _report(ctx: RunContext, seconds: float, steps: int) -> None:
    if isinstance(ctx, StepBudget):
        ctx.report_stage1_time(seconds, steps=steps)
    else:
        ctx.report_stage1_time(seconds)


# Per worker process: the (space, batch sizes, precision) already warmed up.
_WARMED: set[tuple[Any, ...]] = set()


def should_warm_up(device: torch.device) -> bool:
    mode = get_settings().warmup
    return mode == "always" or (mode == "auto" and device.type == "cuda")


class Stage1Watch(Callbacks):
    """Stage 1's stop rules: the threshold (epoch ends, or a sliding epoch window every
    ``threshold_check_steps`` steps) and the batch's ratio-to-fastest budget (in seconds, or in
    optimizer steps when the context caps steps)."""

    def __init__(self, config: FearConfig, ctx: RunContext, steps_per_epoch: int = 1) -> None:
        self.config = config
        self.ctx = ctx
        self.steps_per_epoch = steps_per_epoch
        self.budget = ctx.stage1_budget_s()
        self.budget_steps = _step_budget(ctx)
        self.rejected = False
        self.met = False
        window_steps = config.threshold_check_steps
        self.keeps_window = window_steps is not None
        budget_steps = CHECK_EVERY_STEPS if config.budget_check == "steps" else None
        every = [k for k in (window_steps, budget_steps) if k]
        self.check_every = math.gcd(*every) if every else None

    def over_budget(self, elapsed_s: float, *, at_epoch_end: bool, step: int = 0) -> bool:
        used, budget = (
            (float(step), self.budget_steps) if self.budget_steps is not None else (elapsed_s, self.budget)
        )
        if budget is None:
            return False
        if self.config.budget_check == "epoch_end":
            return at_epoch_end and used >= budget
        return used > budget

    def on_step(self, info: StepInfo) -> bool:
        if (
            self.config.budget_check == "steps"
            and info.step % CHECK_EVERY_STEPS == 0
            and self.over_budget(info.elapsed_s, at_epoch_end=False, step=info.step)
        ):
            self.rejected = True
            return True
        steps = self.config.threshold_check_steps
        if steps and info.step % steps == 0:
            accuracy = info.window_accuracy()
            if accuracy is not None and accuracy >= self.config.threshold:
                self.met = True
                return True
        return False

    def on_epoch(self, stats: EpochStats) -> bool:
        cap = self.config.max_stage1_epochs
        self.ctx.progress(phase="stage1", epoch=stats.epoch, epochs=cap, train_acc=stats.train_acc)
        self.budget = self.ctx.stage1_budget_s()
        self.budget_steps = _step_budget(self.ctx)
        if self.over_budget(stats.elapsed_s, at_epoch_end=True, step=stats.epoch * self.steps_per_epoch):
            self.rejected = True
        elif stats.train_acc >= self.config.threshold:
            self.met = True
        return self.rejected or self.met


@dataclass
class Prepared:
    """One FEAR evaluation ready for stage 1: its network built from the seed and its unfreeze set
    checked (shared by ``run`` and the stacked runner, ``worker.stacking``)."""

    config: FearConfig
    data: DeviceDataset
    model: nn.Module
    identifiers: list[str]
    info: dict[str, Any]

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(train_sample_count(self.data) / self.config.stage1_batch_size)

    def stage1_options(self) -> TrainOptions:
        config = self.config
        return TrainOptions.of_stage(config.stage1, config, horizon_epochs=config.max_stage1_epochs)


def prepare(request: EvalRequest, ctx: RunContext, data: DeviceDataset | None = None) -> Prepared:
    config = FearConfig.model_validate(request.config)
    if data is None:
        data = ctx.dataset(request.dataset, config.data.model_dump(mode="json"))
    model = build_network(
        request.space, request.genotype, config.network, data, request.seed, ctx.device, config.precision
    )
    identifiers = list(config.unfreeze or default_unfreeze(request.space, config.network))
    # Resolve the unfreeze set now (it only sets requires_grad; undone below) so that a bad
    # identifier fails before any training time is spent.
    unfreeze_only(model, identifiers)
    for param in model.parameters():
        param.requires_grad_(True)
    info: dict[str, Any] = {
        "threshold": config.threshold,
        "max_stage1_epochs": config.max_stage1_epochs,
        "unfreeze": identifiers,
    }
    return Prepared(config, data, model, identifiers, info)


@dataclass
class Stage1Record:
    """What stage 1 left, whether it ran alone or in a stack: the outcome, its cost and epoch log."""

    met: bool
    rejected: bool
    seconds: float
    steps: int
    accuracies: list[float]
    losses: list[float]
    budget_s: float | None = None
    budget_steps: float | None = None
    gpu_seconds: float | None = None


def run(request: EvalRequest, ctx: RunContext, *, clock: Clock = time.perf_counter) -> MethodResult:
    prepared = prepare(request, ctx)
    config, data, model = prepared.config, prepared.data, prepared.model
    generator = make_generator(request.seed)
    steps_per_epoch = prepared.steps_per_epoch
    stage1_options = prepared.stage1_options()
    warm_key = (request.space, config.stage1_batch_size, config.stage2_batch_size, config.precision)
    timings = warm_once(warm_key, model, prepared, clock)
    watch = Stage1Watch(config, ctx, steps_per_epoch)
    stage1 = train(model, data, stage1_options, generator, watch, clock=clock)
    record = Stage1Record(
        met=watch.met,
        rejected=watch.rejected,
        seconds=stage1.seconds,
        steps=stage1.steps,
        accuracies=stage1.accuracies,
        losses=stage1.losses,
        budget_s=watch.budget,
        budget_steps=watch.budget_steps,
        gpu_seconds=stage1.gpu_seconds,
    )
    return after_stage1(prepared, ctx, generator, record, timings, clock)


def warm_once(key: tuple[Any, ...], model: nn.Module, prepared: Prepared, clock: Clock) -> dict[str, float]:
    """Stage 1 is timed (the ratio cap compares it): autotuning and lazy kernel loading for its batch
    shapes — full, the partial last batch, stage 2's — are paid once per process and ``key`` before
    the clock starts (on CUDA, per ``settings.warmup``). Returns the timings so far."""
    if not should_warm_up(next(model.parameters()).device) or key in _WARMED:
        return {}
    config, data = prepared.config, prepared.data
    count = train_sample_count(data)
    sizes = {config.stage1_batch_size, config.stage2_batch_size, count % config.stage1_batch_size or 1}
    began = clock()
    warm_up(model, data, prepared.stage1_options(), [min(b, count) for b in sizes])
    _WARMED.add(key)
    return {"warmup_s": clock() - began}


def after_stage1(
    prepared: Prepared,
    ctx: RunContext,
    generator: torch.Generator,
    stage1: Stage1Record,
    timings: dict[str, float],
    clock: Clock = time.perf_counter,
) -> MethodResult:
    """The outcome of stage 1 (``unmet``, ``rejected``) or stage 2 and the score. ``generator``
    must be in the state stage 1 left it in: stage 2 draws its batches from it."""
    config, data, model, info = prepared.config, prepared.data, prepared.model, prepared.info
    identifiers = prepared.identifiers
    cap = config.max_stage1_epochs
    stage1_s = stage1.seconds
    info.update(
        stage1_epochs=len(stage1.accuracies),
        stage1_steps=stage1.steps,
        stage1_epochs_exact=stage1.steps / prepared.steps_per_epoch,
        stage1={"acc": stage1.accuracies, "loss": stage1.losses},
        stage1_final_loss=stage1.losses[-1] if stage1.losses else None,
        budget_s=stage1.budget_s,
        budget_steps=stage1.budget_steps,
    )
    timings["stage1_s"] = stage1_s
    if stage1.gpu_seconds is not None:
        timings["stage1_gpu_s"] = stage1.gpu_seconds
    if not stage1.met:
        if config.fastest_includes_misses:
            # The authors' search: every candidate's stage-1 time may set the batch's fastest time.
            _report(ctx, stage1_s, stage1.steps)
        if stage1.rejected:
            return MethodResult(
                score=None,
                status="rejected",
                reason=(
                    f"stage 1 took {stage1.steps} steps, over the budget of {stage1.budget_steps:.0f} steps "
                    "(ratio × fastest steps-to-threshold on this device class in this batch)"
                    if stage1.budget_steps is not None
                    else f"stage 1 took {stage1_s:.2f} s, over the budget of {stage1.budget_s or 0.0:.2f} s "
                    "(ratio × fastest time-to-threshold on this device class in this batch)"
                ),
                cost_s=stage1_s,
                timings=timings,
                info=info,
                stage1_s=stage1_s,
            )
        best = max(stage1.accuracies)
        return MethodResult(
            score=None,
            status="unmet",
            reason=f"epoch train top-1 stayed below {config.threshold} for {cap} epochs (best {best:.4f})",
            cost_s=stage1_s,
            timings=timings,
            info=info,
            stage1_s=stage1_s,
        )
    info["time_to_threshold_s"] = stage1_s
    info["steps_to_threshold"] = stage1.steps
    _report(ctx, stage1_s, stage1.steps)

    # --- stage 2 -----------------------------------------------------------------------------
    trainable_names = unfreeze_only(model, identifiers)
    trainable, total = count_parameters(model)
    stage2 = train(
        model,
        data,
        TrainOptions.of_stage(config.stage2, config, top_only=True),
        generator,
        ReportProgress(ctx.progress, "stage2", config.stage2_epochs),
        clock=clock,
    )
    timings["stage2_s"] = stage2.seconds
    accuracies = stage2.accuracies
    score = max(accuracies) if config.score_epoch == "best" else accuracies[-1]
    info.update(
        stage2={"acc": stage2.accuracies, "loss": stage2.losses},
        stage2_final_loss=stage2.losses[-1],
        stage2_scored_epoch=accuracies.index(score) + 1 if config.score_epoch == "best" else len(accuracies),
        trainable_params=trainable,
        total_params=total,
        trainable_ratio=trainable / total if total else 0.0,
        trainable_tensors=len(trainable_names),
    )
    return MethodResult(
        score=score,
        status="done",
        finite=math.isfinite(score),
        cost_s=stage1_s + stage2.seconds,
        timings=timings,
        info=info,
        stage1_s=stage1_s,
    )
