"""fisher: per output channel k of each Conv/Linear layer, g_nk = Σ_spatial(a ⊙ dL/da) at the layer
output a; Δ_k = 0.5·mean_n(g_nk²); the layer contributes Σ_k Δ_k · fan_in (the weights feeding k)."""

from __future__ import annotations

from torch import nn

from worker.methods.zero_cost.common import Batch, LossGradients, Score, loss_gradients, total
from worker.methods.zero_cost.registry import implements


def fisher_from(grads: LossGradients) -> Score:
    contributions = []
    for g, fan_in in zip(grads.channel_products, grads.fan_in, strict=True):
        if g is None:  # the layer's output never reaches the loss
            continue
        delta = 0.5 * g.double().pow(2).mean(0)
        contributions.append(delta.sum() * fan_in)
    return Score(total(contributions))


@implements("fisher", from_gradients=fisher_from)
def fisher(model: nn.Module, batch: Batch) -> Score:
    return fisher_from(loss_gradients(model, batch))
