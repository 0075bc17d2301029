"""shortreg: regular training of the whole network for E epochs (cosine completes within E);
score = the best epoch-average train top-1 over the E epochs (fraction 0..1)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from torch import nn

from app.catalog.training import ShortregConfig
from worker.data.base import DeviceDataset
from worker.methods.base import EvalRequest, MethodResult, RunContext
from worker.training import (
    Clock,
    ReportProgress,
    TrainOptions,
    TrainResult,
    build_network,
    make_generator,
    train,
)


@dataclass
class RegularRun:
    model: nn.Module
    data: DeviceDataset
    result: TrainResult
    info: dict[str, Any]


def train_regular(
    request: EvalRequest, ctx: RunContext, config: ShortregConfig, clock: Clock = time.perf_counter
) -> RegularRun:
    """Build, then train the whole network for ``config.epochs`` epochs (shared with ``full``)."""
    data = ctx.dataset(request.dataset, config.data.model_dump(mode="json"))
    model = build_network(
        request.space, request.genotype, config.network, data, request.seed, ctx.device, config.precision
    )
    result = train(
        model,
        data,
        TrainOptions.of_stage(config.stage, config),
        make_generator(request.seed),
        ReportProgress(ctx.progress, "train", config.epochs),
        clock=clock,
    )
    return RegularRun(model, data, result, regular_info(result.accuracies, result.losses))


def regular_info(accuracies: list[float], losses: list[float]) -> dict[str, Any]:
    """The epoch log of a regular training run (alone or one network of a stack)."""
    return {
        "epochs": len(accuracies),
        "train": {"acc": accuracies, "loss": losses},
        "final_train_acc": accuracies[-1],
        "final_train_loss": losses[-1],
    }


def scored(accuracies: list[float], train_s: float, info: dict[str, Any]) -> MethodResult:
    """shortreg's result from its epoch accuracies: the best epoch."""
    score = max(accuracies)
    info["best_epoch"] = accuracies.index(score) + 1
    return MethodResult(score=score, cost_s=train_s, timings={"train_s": train_s}, info=info)


def run(request: EvalRequest, ctx: RunContext, *, clock: Clock = time.perf_counter) -> MethodResult:
    config = ShortregConfig.model_validate(request.config)
    regular = train_regular(request, ctx, config, clock)
    return scored(regular.result.accuracies, regular.result.seconds, regular.info)
