"""plain: the signed sum of dL/dW ⊙ W (it correlates negatively with accuracy on NB201; the score
is still reported as is, higher = "better" by the measure's own convention)."""

from __future__ import annotations

from torch import nn

from worker.methods.zero_cost.common import Batch, LossGradients, Score, loss_gradients, total
from worker.methods.zero_cost.registry import implements


def plain_from(grads: LossGradients) -> Score:
    pairs = zip(grads.weights, grads.weight_grads, strict=True)
    return Score(total([(w * g).sum() for w, g in pairs]))


@implements("plain", from_gradients=plain_from)
def plain(model: nn.Module, batch: Batch) -> Score:
    return plain_from(loss_gradients(model, batch))
