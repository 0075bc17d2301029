"""synflow / synflow_bn: synaptic flow of the "linearised" network (every parameter and buffer
made non-negative) on one all-ones image in float64: Σ |W ⊙ dR/dW| with R = Σ output.

synflow replaces BatchNorm by the identity; synflow_bn keeps it (train mode, batch statistics).
The value grows exponentially with depth: 1e30-1e60 is normal, so it is reported with its log10.
An exact 0 (every path blocked by ``none``) is a legitimate bottom score; overflow to inf means
"larger than float64 holds" and is reported as non-finite with reason "overflow".
"""

from __future__ import annotations

import copy
import itertools
import math

import torch
from torch import nn

from worker.methods.zero_cost.common import Batch, Score, logits_of, remove_batchnorm, total, weight_layers
from worker.methods.zero_cost.registry import implements

OVERFLOW = "overflow: the float64 synaptic flow exceeds the largest float (ranks as the largest score)"


@implements("synflow")
def synflow(model: nn.Module, batch: Batch) -> Score:
    return synaptic_flow(model, batch, keep_batchnorm=False)


@implements("synflow_bn")
def synflow_bn(model: nn.Module, batch: Batch) -> Score:
    return synaptic_flow(model, batch, keep_batchnorm=True)


def synaptic_flow(model: nn.Module, batch: Batch, *, keep_batchnorm: bool) -> Score:
    # A private copy: the structure (BN), the dtype and the signs all change.
    net = copy.deepcopy(model)
    if not keep_batchnorm:
        remove_batchnorm(net)
    net.double().train()
    with torch.no_grad():
        for tensor in itertools.chain(net.parameters(), net.buffers()):
            tensor.abs_()
    image_shape = batch[0].shape[1:]
    ones = torch.ones((1, *image_shape), dtype=torch.float64, device=batch[0].device)
    flow = logits_of(net(ones)).sum()
    info: dict = {"batchnorm": "kept" if keep_batchnorm else "removed"}
    if not torch.isfinite(flow):
        # The last Linear alone contributes R - Σ|bias| to the score, so an overflowing R means the
        # score overflows too; the backward pass would only turn inf·0 into NaN.
        return Score(math.inf, OVERFLOW, {**info, "log10": math.inf})
    weights = [layer.weight for layer in weight_layers(net)]
    grads = (
        torch.autograd.grad(flow, weights, allow_unused=True) if flow.requires_grad else [None] * len(weights)
    )
    value = total(
        [(w.detach() * g).abs().sum() for w, g in zip(weights, grads, strict=True) if g is not None]
    )
    log10 = math.log10(value) if value > 0 else (-math.inf if value == 0 else math.nan)
    info["log10"] = log10
    # Every quantity is non-negative, so NaN can only come from inf·0 or inf-inf: an overflow too.
    reason = None if math.isfinite(value) else OVERFLOW
    return Score(value, reason, info)
