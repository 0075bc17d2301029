"""Method name → implementation. The torch-free side of each method lives in app/catalog/."""

from __future__ import annotations

from worker.methods import fear, full, shortreg
from worker.methods.base import TrainingMethod
from worker.methods.zero_cost import run_zero_cost
from worker.methods.zero_cost.registry import MEASURES as _MEASURES

TRAINING: dict[str, TrainingMethod] = {"fear": fear.run, "shortreg": shortreg.run, "full": full.run}
ZERO_COST: frozenset[str] = frozenset(_MEASURES)

__all__ = ["TRAINING", "ZERO_COST", "run_zero_cost"]
