"""Method name → implementation. Specs (config, presets, direction) live in app/catalog/;
tests/test_specs.py asserts every spec has an implementation here and the reverse."""

from __future__ import annotations

from worker.methods import fear, full, shortreg
from worker.methods.base import TrainingMethod
from worker.methods.zero_cost import measures, run_zero_cost

TRAINING: dict[str, TrainingMethod] = {"fear": fear.run, "shortreg": shortreg.run, "full": full.run}
ZERO_COST: frozenset[str] = frozenset(measures())


def implemented() -> frozenset[str]:
    """Every method name this worker can run."""
    return frozenset(TRAINING) | ZERO_COST


__all__ = ["TRAINING", "ZERO_COST", "implemented", "run_zero_cost"]
