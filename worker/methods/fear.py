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
from typing import Any

from torch import nn

from app.catalog.base import NetworkOptions
from app.catalog.training import FearConfig
from app.spaces import get_space_spec
from worker.methods.base import EvalRequest, MethodResult, RunContext
from worker.training import (
    Callbacks,
    Clock,
    EpochStats,
    ReportProgress,
    StepInfo,
    TrainOptions,
    TrainResult,
    build_network,
    count_parameters,
    make_generator,
    train,
    train_sample_count,
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


def _epoch_log(result: TrainResult) -> dict[str, list[float]]:
    return {"acc": result.accuracies, "loss": result.losses}


class Stage1Watch(Callbacks):
    """Stage 1's stop rules: the threshold (epoch ends, or a sliding epoch window every
    ``threshold_check_steps`` steps) and the batch's ratio-to-fastest budget."""

    def __init__(self, config: FearConfig, ctx: RunContext) -> None:
        self.config = config
        self.ctx = ctx
        self.budget = ctx.stage1_budget_s()
        self.rejected = False
        self.met = False
        window_steps = config.threshold_check_steps
        self.keeps_window = window_steps is not None
        budget_steps = CHECK_EVERY_STEPS if config.budget_check == "steps" else None
        every = [k for k in (window_steps, budget_steps) if k]
        self.check_every = math.gcd(*every) if every else None

    def over_budget(self, elapsed_s: float, *, at_epoch_end: bool) -> bool:
        if self.budget is None:
            return False
        if self.config.budget_check == "epoch_end":
            return at_epoch_end and elapsed_s >= self.budget
        return elapsed_s > self.budget

    def on_step(self, info: StepInfo) -> bool:
        if (
            self.config.budget_check == "steps"
            and info.step % CHECK_EVERY_STEPS == 0
            and self.over_budget(info.elapsed_s, at_epoch_end=False)
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
        if self.over_budget(stats.elapsed_s, at_epoch_end=True):
            self.rejected = True
        elif stats.train_acc >= self.config.threshold:
            self.met = True
        return self.rejected or self.met


def run(request: EvalRequest, ctx: RunContext, *, clock: Clock = time.perf_counter) -> MethodResult:
    config = FearConfig.model_validate(request.config)
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
    generator = make_generator(request.seed)
    cap = config.max_stage1_epochs
    info: dict[str, Any] = {
        "threshold": config.threshold,
        "max_stage1_epochs": cap,
        "unfreeze": identifiers,
    }

    # --- stage 1 -----------------------------------------------------------------------------
    watch = Stage1Watch(config, ctx)
    stage1 = train(
        model,
        data,
        TrainOptions.of_stage(config.stage1, config, horizon_epochs=cap),
        generator,
        watch,
        clock=clock,
    )
    stage1_s = stage1.seconds
    steps_per_epoch = math.ceil(train_sample_count(data) / config.stage1_batch_size)
    info.update(
        stage1_epochs=len(stage1.epochs),
        stage1_steps=stage1.steps,
        stage1_epochs_exact=stage1.steps / steps_per_epoch,
        stage1=_epoch_log(stage1),
        stage1_final_loss=stage1.losses[-1] if stage1.epochs else None,
        budget_s=watch.budget,
    )
    timings = {"stage1_s": stage1_s}
    if not watch.met:
        if config.fastest_includes_misses:
            # The authors' search: every candidate's stage-1 time may set the batch's fastest time.
            ctx.report_stage1_time(stage1_s)
        if watch.rejected:
            return MethodResult(
                score=None,
                status="rejected",
                reason=(
                    f"stage 1 took {stage1_s:.2f} s, over the budget of {watch.budget:.2f} s "
                    "(ratio × fastest time-to-threshold in this batch)"
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
    ctx.report_stage1_time(stage1_s)

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
        stage2=_epoch_log(stage2),
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
