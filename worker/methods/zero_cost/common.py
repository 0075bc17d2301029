"""Pieces every zero-cost measure shares: which layers count, the loss, the result type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class Score:
    """A measure's raw value; ``reason`` says why it is non-finite (None when finite)."""

    value: float
    reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def weight_layers(model: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    """The layers whose ``.weight`` the measures score (the spec counts Conv2d and Linear only)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def logits_of(output: Any) -> Tensor:
    # Some builders return (logits, auxiliary_logits) in train mode; only the logits are scored.
    if isinstance(output, tuple | list):
        return output[0]
    return output


def batch_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Cross-entropy, mean over the whole batch, of the model in train mode."""
    images, labels = batch
    model.train()
    return F.cross_entropy(logits_of(model(images)), labels)


def grads_or_zeros(grads: tuple[Tensor | None, ...], like: list[Tensor]) -> list[Tensor]:
    # A weight the loss does not reach (a layer cut off by `none` ops) has gradient zero, not "missing".
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, like, strict=True)]


def loss_weight_grads(model: nn.Module, batch: Batch) -> tuple[list[Tensor], list[Tensor]]:
    """Conv/Linear weights (detached) and dL/dW. ``autograd.grad`` leaves every ``.grad`` untouched, so no
    measure can leak gradients into the next one."""
    weights = [layer.weight for layer in weight_layers(model)]
    loss = batch_loss(model, batch)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [w.detach() for w in weights], grads_or_zeros(grads, weights)


def total(per_layer: list[Tensor]) -> float:
    """Sum of per-layer values, accumulated in float64."""
    if not per_layer:
        return 0.0
    return float(torch.stack([t.detach().double() for t in per_layer]).sum())


def remove_batchnorm(model: nn.Module) -> None:
    """Replace every BatchNorm by the identity, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BATCHNORMS):
                setattr(parent, name, nn.Identity())
