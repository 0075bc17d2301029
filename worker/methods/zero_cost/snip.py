"""snip: connection sensitivity, the sum of |W ⊙ dL/dW| over Conv/Linear weights."""

from __future__ import annotations

from torch import nn

from worker.methods.zero_cost.common import Batch, Score, loss_weight_grads, total


def snip(model: nn.Module, batch: Batch) -> Score:
    weights, grads = loss_weight_grads(model, batch)
    return Score(total([(w * g).abs().sum() for w, g in zip(weights, grads, strict=True)]))
