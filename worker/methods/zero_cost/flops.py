"""flops: multiply-adds of the conv and linear layers for one image (NB201's counting), static."""

from __future__ import annotations

from torch import nn

from worker.methods.zero_cost.common import Batch, Score
from worker.methods.zero_cost.registry import implements


@implements("flops")
def flops(model: nn.Module, batch: Batch) -> Score:
    from worker.spaces.counting import count_flops

    channels, input_size = int(batch[0].shape[1]), int(batch[0].shape[-1])
    count = count_flops(model, input_size, in_channels=channels)
    return Score(float(count), info={"millions": count / 1e6, "input_size": input_size})
