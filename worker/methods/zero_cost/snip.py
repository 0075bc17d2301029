"""snip: connection sensitivity, the sum of |W ⊙ dL/dW| over Conv/Linear weights."""

from __future__ import annotations

from torch import nn

from worker.methods.zero_cost.common import Batch, LossGradients, Score, loss_gradients, total
from worker.methods.zero_cost.registry import implements


def snip_from(grads: LossGradients) -> Score:
    pairs = zip(grads.weights, grads.weight_grads, strict=True)
    return Score(total([(w * g).abs().sum() for w, g in pairs]))


@implements("snip", from_gradients=snip_from)
def snip(model: nn.Module, batch: Batch) -> Score:
    return snip_from(loss_gradients(model, batch))
