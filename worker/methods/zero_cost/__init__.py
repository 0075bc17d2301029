"""Training-free ("zero-cost") measures: one module per measure, a registry, and the runner that
computes several measures of one architecture from one build and one data batch."""

from worker.methods.zero_cost.registry import MEASURES, Measure
from worker.methods.zero_cost.runner import run_zero_cost

__all__ = ["MEASURES", "Measure", "run_zero_cost"]
