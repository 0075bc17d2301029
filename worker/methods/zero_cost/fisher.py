"""fisher: per output channel k of each Conv/Linear layer, g_nk = Σ_spatial(a ⊙ dL/da) at the layer
output a; Δ_k = 0.5·mean_n(g_nk²); the layer contributes Σ_k Δ_k · fan_in (the weights feeding k)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from worker.methods.zero_cost.common import Batch, Score, batch_loss, total, weight_layers


def per_channel(product: Tensor, layer: nn.Module) -> Tensor:
    """Sum activation⊙gradient over everything but the sample and the output-channel axis."""
    samples = product.shape[0]
    if isinstance(layer, nn.Linear):  # channels last: (N, ..., K)
        return product.reshape(samples, -1, product.shape[-1]).sum(1)
    return product.reshape(samples, product.shape[1], -1).sum(2)  # conv: (N, K, H, W)


def fisher(model: nn.Module, batch: Batch) -> Score:
    layers = weight_layers(model)
    outputs: list[list[Tensor]] = [[] for _ in layers]

    def keeper(slot: list[Tensor]):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            slot.append(output)

        return hook

    handles = [layer.register_forward_hook(keeper(slot)) for layer, slot in zip(layers, outputs, strict=True)]
    try:
        loss = batch_loss(model, batch)
    finally:
        for handle in handles:
            handle.remove()

    flat = [out for slot in outputs for out in slot]
    grads = iter(torch.autograd.grad(loss, flat, allow_unused=True)) if flat else iter(())
    contributions = []
    for layer, slot in zip(layers, outputs, strict=True):
        # A layer called several times shares one channel mask, so its calls' g_nk add up.
        g = None
        for out in slot:
            grad = next(grads)
            if grad is None:
                continue
            term = per_channel(out.detach() * grad, layer)
            g = term if g is None else g + term
        if g is None:
            continue
        delta = 0.5 * g.pow(2).mean(0)
        fan_in = math.prod(layer.weight.shape[1:])
        contributions.append(delta.sum() * fan_in)
    return Score(total(contributions))
