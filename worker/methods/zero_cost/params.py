"""params: the number of parameters of the built network (a static measure: no data, no seed)."""

from __future__ import annotations

from torch import nn

from worker.methods.zero_cost.common import Batch, Score
from worker.methods.zero_cost.registry import implements


@implements("params")
def params(model: nn.Module, batch: Batch | None = None) -> Score:
    from worker.spaces.counting import count_params

    count = count_params(model)
    return Score(float(count), info={"millions": count / 1e6})
