"""full (ground truth): regular training for E epochs, then top-1 on the held-out test split
(fraction 0..1), or on one NAS-Bench-201 half of it (``data.test_split``). Cost = training time + the
test pass."""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from app.catalog.training import FullConfig
from worker.data.base import DeviceDataset
from worker.methods.base import EvalRequest, MethodResult, RunContext
from worker.methods.shortreg import train_regular
from worker.training import Clock, evaluate


def run(request: EvalRequest, ctx: RunContext, *, clock: Clock = time.perf_counter) -> MethodResult:
    config = FullConfig.model_validate(request.config)
    regular = train_regular(request, ctx, config, clock)
    return tested(regular.model, regular.data, config, regular.result.seconds, regular.info, clock)


def tested(
    model: nn.Module,
    data: DeviceDataset,
    config: FullConfig,
    train_s: float,
    info: dict[str, Any],
    clock: Clock = time.perf_counter,
) -> MethodResult:
    """full's result for a trained network (alone or taken out of a stack): its test top-1."""
    test_start = clock()
    test = evaluate(model, data, precision=config.precision, normalize=config.data.normalize)
    test_s = clock() - test_start
    # The data was loaded with ``data.test_split``, so ``evaluate`` sees only the chosen half of the
    # test split (NAS-Bench-201's x-test is what NATS-Bench reports as test accuracy).
    info.update(test_loss=test.loss, test_samples=test.samples, test_split=config.data.test_split)
    return MethodResult(
        score=test.accuracy,
        cost_s=train_s + test_s,
        timings={"train_s": train_s, "test_s": test_s},
        info=info,
    )
