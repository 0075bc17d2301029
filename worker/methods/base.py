"""Method contract: one evaluation request in, a score plus timings out.

Training methods (fear, shortreg, full) implement ``run(request, ctx)``. Zero-cost measures are
computed together for one architecture (built once, one data batch) by ``run_zero_cost``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch

from worker.data.base import DeviceDataset

if TYPE_CHECKING:
    from app.lifecycle import Claim


@dataclass(frozen=True)
class EvalRequest:
    evaluation_id: int
    method: str
    space: str
    genotype: str  # canonical
    dataset: str
    seed: int
    config: dict[str, Any]  # the resolved, validated effective config (app.catalog)

    @classmethod
    def of(cls, c: Claim) -> EvalRequest:
        """The request a claimed evaluation asks the method to run."""
        return cls(c.evaluation_id, c.method, c.space, c.genotype, c.dataset, c.seed, c.config)


@dataclass
class MethodResult:
    score: float | None
    # "failed": the method raised for this one evaluation while others of its task went on
    status: Literal["done", "unmet", "rejected", "failed"] = "done"
    finite: bool = True
    reason: str | None = None  # why the score is non-finite / unmet / rejected
    cost_s: float = 0.0  # training time (or measure time) that counts as the method's cost
    timings: dict[str, float] = field(default_factory=dict)  # per stage, seconds
    info: dict[str, Any] = field(default_factory=dict)  # epochs, losses, trainable ratio, log10 ...
    # FEAR: seconds of stage 1, whatever its outcome (for the batch's fastest-time bookkeeping)
    stage1_s: float | None = None




class LostOwnership(RuntimeError):
    """Raised from ``RunContext.progress`` when another attempt now owns the evaluation."""


class RunContext(Protocol):
    device: torch.device

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> DeviceDataset:
        """Load (once per process, then cached) the dataset named by the batch, with the
        method's ``data`` config (subset sizes, synthetic sizes)."""
        ...

    def progress(self, **fields: Any) -> None:
        """Store live progress (phase, epoch, accuracy ...); doubles as the heartbeat.
        Throttled by the implementation; may raise ``LostOwnership``."""
        ...

    def stage1_budget_s(self) -> float | None:
        """FEAR's ratio-to-fastest cap: the current stage-1 budget in seconds, None if unlimited."""
        ...

    def report_stage1_time(self, seconds: float) -> None:
        """FEAR reports its time-to-threshold so the batch's fastest time can tighten the cap."""
        ...


class TrainingMethod(Protocol):
    def __call__(self, request: EvalRequest, ctx: RunContext) -> MethodResult: ...
