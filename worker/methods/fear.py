"""FEAR (Dey et al., arXiv 2106.04010): rank architectures by the features they learn early.

Stage 1 trains the whole network until the epoch-average train top-1 reaches the threshold
(checked at epoch ends; cosine horizon = the epoch cap). Stage 2 freezes every parameter except
those inside the unfreeze modules and trains them with a fresh optimiser, model still in train
mode (frozen BN layers keep updating their running statistics). Score = the last stage-2 epoch's
train top-1 as a fraction 0..1.

Outcomes: ``done``; ``unmet`` (threshold not reached within the cap, score None, time recorded);
``rejected`` (stage 1 ran past the batch's ratio-to-fastest budget, checked every few steps and at
epoch ends; no stage 2). The budget is read at the start and re-read at each epoch end, since other
evaluations of the batch may report faster times meanwhile.
"""

from __future__ import annotations

import math
import time
from typing import Any

from torch import nn

from app.catalog.training import FearConfig
from worker.methods.base import EvalRequest, MethodResult, RunContext
from worker.training import (
    Clock,
    EpochStats,
    TrainResult,
    aux_weight_of,
    build_network,
    builder_options,
    count_parameters,
    device_label,
    make_generator,
    sgd_from,
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


def default_unfreeze(space: str, network: dict[str, Any]) -> list[str]:
    from worker.spaces import unfreeze_default

    return list(unfreeze_default(space, builder_options(space, network)))


def _epoch_log(result: TrainResult) -> dict[str, list[float]]:
    return {"acc": result.accuracies, "loss": result.losses}


def run(request: EvalRequest, ctx: RunContext, *, clock: Clock = time.perf_counter) -> MethodResult:
    config = FearConfig.model_validate(request.config).model_dump(mode="json")
    data = ctx.dataset(request.dataset, config["data"])
    network = config["network"]
    model = build_network(request.space, request.genotype, network, data, request.seed, ctx.device)
    identifiers = config["unfreeze"] or default_unfreeze(request.space, network)
    # Resolve the unfreeze set now (it only sets requires_grad; undone below) so that a bad
    # identifier fails before any training time is spent.
    unfreeze_only(model, identifiers)
    for param in model.parameters():
        param.requires_grad_(True)
    generator = make_generator(request.seed)
    threshold = config["threshold"]
    cap = config["max_stage1_epochs"]
    info: dict[str, Any] = {
        "threshold": threshold,
        "max_stage1_epochs": cap,
        "unfreeze": identifiers,
        "device": device_label(ctx.device),
    }

    # --- stage 1 -----------------------------------------------------------------------------
    budget: list[float | None] = [ctx.stage1_budget_s()]

    def over_budget(elapsed_s: float) -> bool:
        return budget[0] is not None and elapsed_s > budget[0]

    def after_stage1_epoch(stats: EpochStats) -> bool:
        ctx.progress(phase="stage1", epoch=stats.epoch, epochs=cap, train_acc=stats.train_acc)
        budget[0] = ctx.stage1_budget_s()
        return over_budget(stats.elapsed_s) or stats.train_acc >= threshold

    stage1 = train(
        model,
        data,
        epochs=cap,
        horizon_epochs=cap,
        batch_size=config["stage1_batch_size"],
        sgd=sgd_from(config, "stage1_"),
        generator=generator,
        augment=config["data"]["augment"],
        cutout=config["data"]["cutout"],
        aux_weight=aux_weight_of(network),
        drop_path=network["drop_path"],
        on_epoch=after_stage1_epoch,
        step_check=over_budget,
        check_every=CHECK_EVERY_STEPS,
        window_check=(lambda acc: acc >= threshold) if config["threshold_check_steps"] else None,
        window_every=config["threshold_check_steps"] or 1,
        clock=clock,
    )
    stage1_s = stage1.seconds
    steps_per_epoch = math.ceil(train_sample_count(data) / config["stage1_batch_size"])
    info.update(
        stage1_epochs=len(stage1.epochs),
        stage1_steps=stage1.steps,
        stage1_epochs_exact=stage1.steps / steps_per_epoch,
        stage1=_epoch_log(stage1),
        stage1_final_loss=stage1.losses[-1] if stage1.epochs else None,
        budget_s=budget[0],
    )
    timings = {"stage1_s": stage1_s}
    rejected = stage1.stopped == "step_check" or (
        stage1.stopped == "epoch_callback" and over_budget(stage1.epochs[-1].elapsed_s)
    )
    if rejected:
        return MethodResult(
            score=None,
            status="rejected",
            reason=(
                f"stage 1 took {stage1_s:.2f} s, over the budget of {budget[0]:.2f} s "
                "(ratio × fastest time-to-threshold in this batch)"
            ),
            cost_s=stage1_s,
            timings=timings,
            info=info,
        )
    if stage1.stopped == "completed":
        best = max(stage1.accuracies)
        return MethodResult(
            score=None,
            status="unmet",
            reason=f"epoch train top-1 stayed below {threshold} for {cap} epochs (best {best:.4f})",
            cost_s=stage1_s,
            timings=timings,
            info=info,
        )
    info["time_to_threshold_s"] = stage1_s
    ctx.report_stage1_time(stage1_s)

    # --- stage 2 -----------------------------------------------------------------------------
    trainable_names = unfreeze_only(model, identifiers)
    trainable, total = count_parameters(model)
    stage2_epochs = config["stage2_epochs"]

    def after_stage2_epoch(stats: EpochStats) -> bool:
        ctx.progress(phase="stage2", epoch=stats.epoch, epochs=stage2_epochs, train_acc=stats.train_acc)
        return False

    stage2 = train(
        model,
        data,
        epochs=stage2_epochs,
        batch_size=config["stage2_batch_size"],
        sgd=sgd_from(config, "stage2_"),
        generator=generator,
        augment=config["data"]["augment"],
        cutout=config["data"]["cutout"],
        aux_weight=0.0,  # the authors: no auxiliary loss and no drop path while frozen
        drop_path=0.0,
        on_epoch=after_stage2_epoch,
        clock=clock,
    )
    timings["stage2_s"] = stage2.seconds
    score = stage2.accuracies[-1]
    info.update(
        stage2=_epoch_log(stage2),
        stage2_final_loss=stage2.losses[-1],
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
    )
