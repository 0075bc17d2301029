"""Pieces every zero-cost measure shares: which layers count, the loss, the result type."""

from __future__ import annotations

import math
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


@dataclass
class LossGradients:
    """Everything grad_norm, snip, plain and fisher read from one forward/backward pass of the
    fresh network on the batch, so the runner can compute it once for all four."""

    weights: list[Tensor]  # detached Conv/Linear weights
    weight_grads: list[Tensor]  # dL/dW (zeros where the loss does not reach the layer)
    channel_products: list[Tensor | None]  # per layer g_nk = Σ_spatial a ⊙ dL/da (N×K), None if unreached
    fan_in: list[int]  # prod(W.shape[1:]): the weights feeding one output channel


def per_channel(product: Tensor, layer: nn.Module) -> Tensor:
    """Sum activation⊙gradient over everything but the sample and the output-channel axis."""
    samples = product.shape[0]
    if isinstance(layer, nn.Linear):  # channels last: (N, ..., K)
        return product.reshape(samples, -1, product.shape[-1]).sum(1)
    return product.reshape(samples, product.shape[1], -1).sum(2)  # conv: (N, K, H, W)


def loss_gradients(model: nn.Module, batch: Batch) -> LossGradients:
    layers = weight_layers(model)
    weights = [layer.weight for layer in layers]
    outputs: list[list[Tensor]] = [[] for _ in layers]
    versions: list[int] = []  # of every output, in call order

    def keeper(slot: list[Tensor]):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            slot.append(output)
            versions.append(output._version)

        return hook

    handles = [layer.register_forward_hook(keeper(slot)) for layer, slot in zip(layers, outputs, strict=True)]
    try:
        loss = batch_loss(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    flat = [out for slot in outputs for out in slot]
    # An in-place op applied to a layer output would silently change the activation fisher reads.
    # (In-place ops bump a tensor's version; the hooks saw each output's version when it was made.)
    if sum(out._version for out in flat) != sum(versions):
        raise RuntimeError(
            "a Conv/Linear output was modified in place: fisher's activations are not available"
        )
    # One backward pass gives dL/dW and dL/da together (and dL/dW is bit-identical to asking for it alone).
    grads = torch.autograd.grad(loss, weights + flat, allow_unused=True)
    weight_grads = grads_or_zeros(grads[: len(weights)], weights)
    output_grads = iter(grads[len(weights) :])
    products: list[Tensor | None] = []
    for layer, slot in zip(layers, outputs, strict=True):
        # A layer called several times shares one channel mask, so its calls' g_nk add up.
        g = None
        for out in slot:
            grad = next(output_grads)
            if grad is not None:
                term = per_channel(out.detach() * grad, layer)
                g = term if g is None else g + term
        products.append(g)
    return LossGradients(
        weights=[w.detach() for w in weights],
        weight_grads=weight_grads,
        channel_products=products,
        fan_in=[math.prod(w.shape[1:]) for w in weights],
    )


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
