"""plain: the signed sum of dL/dW ⊙ W (it correlates negatively with accuracy on NB201; the score
is still reported as is, higher = "better" by the measure's own convention)."""

from __future__ import annotations

from torch import nn

from worker.methods.zero_cost.common import Batch, Score, loss_weight_grads, total


def plain(model: nn.Module, batch: Batch) -> Score:
    weights, grads = loss_weight_grads(model, batch)
    return Score(total([(w * g).sum() for w, g in zip(weights, grads, strict=True)]))
