"""grasp: -W ⊙ (H g), with g = dL/dW held constant and H g obtained by differentiating g·dL/dW."""

from __future__ import annotations

import torch
from torch import nn

from worker.methods.zero_cost.common import Batch, Score, batch_loss, total, weight_layers
from worker.methods.zero_cost.registry import implements


@implements("grasp")
def grasp(model: nn.Module, batch: Batch) -> Score:
    weights = [layer.weight for layer in weight_layers(model)]
    loss = batch_loss(model, batch)
    # One forward pass serves both derivatives: in train mode a second pass over the same batch
    # would give identical activations (batch statistics), so the reference's two passes are redundant.
    grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    reached = [(w, g) for w, g in zip(weights, grads, strict=True) if g is not None]
    dot = sum((g.detach() * g).sum() for _, g in reached)
    if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
        return Score(0.0)  # the gradient does not depend on any weight: H g = 0
    hessian_grad = torch.autograd.grad(dot, [w for w, _ in reached], allow_unused=True)
    return Score(
        total(
            [
                -(w.detach() * hg).sum()
                for (w, _), hg in zip(reached, hessian_grad, strict=True)
                if hg is not None
            ]
        )
    )
