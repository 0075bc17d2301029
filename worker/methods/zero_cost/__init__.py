"""Training-free ("zero-cost") measures: one module per measure (registered with ``@implements``),
the registry joining them to their specs, and the runner that computes several measures of one
architecture from one build and one data batch."""

from worker.methods.zero_cost.registry import Measure, measures
from worker.methods.zero_cost.runner import run_zero_cost

__all__ = ["Measure", "measures", "run_zero_cost"]
