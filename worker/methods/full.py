"""full (ground truth): regular training for E epochs, then top-1 on the held-out test split
(fraction 0..1), or on one NAS-Bench-201 half of it (``data.test_split``). Cost = training time + the
test pass."""

from __future__ import annotations

import time

from app.catalog.training import FullConfig
from worker.methods.base import EvalRequest, MethodResult, RunContext
from worker.methods.shortreg import train_regular
from worker.training import Clock, evaluate


def run(request: EvalRequest, ctx: RunContext, *, clock: Clock = time.perf_counter) -> MethodResult:
    config = FullConfig.model_validate(request.config)
    regular = train_regular(request, ctx, config, clock)
    test_start = clock()
    test = evaluate(regular.model, regular.data, precision=config.precision, normalize=config.data.normalize)
    test_s = clock() - test_start
    train_s = regular.result.seconds
    # The data was loaded with ``data.test_split``, so ``evaluate`` sees only the chosen half of the
    # test split (NAS-Bench-201's x-test is what NATS-Bench reports as test accuracy).
    regular.info.update(test_loss=test.loss, test_samples=test.samples, test_split=config.data.test_split)
    return MethodResult(
        score=test.accuracy,
        cost_s=train_s + test_s,
        timings={"train_s": train_s, "test_s": test_s},
        info=regular.info,
    )
