"""naswot (Mellor et al. v2): log|det K| where K counts, for every pair of images, the ReLU units
that agree on being active or inactive: K = Σ_ReLUs c·cᵀ + (1-c)(1-c)ᵀ, c = 1[ReLU input > 0]."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from worker.methods.zero_cost.common import Batch, Score
from worker.methods.zero_cost.registry import implements

SINGULAR = "identical activation codes for two images: K is singular (log|det K| = -inf)"
NO_RELU = "the network has no ReLU: K = 0"

# Float32 sums of 0/1 products are exact integers while they stay below 2**24.
_EXACT_FLOAT32 = 2**24


def add_agreements(kernel: Tensor, relu_input: Tensor) -> None:
    """K += c cᵀ + (1-c)(1-c)ᵀ, computed as 2 c cᵀ - s_i - s_j + D (s = row sums, D = units):
    one matrix product instead of two."""
    codes = relu_input.detach().reshape(kernel.shape[0], -1) > 0
    units = codes.shape[1]
    dtype = torch.float32 if units < _EXACT_FLOAT32 else torch.float64
    c = codes.to(dtype)
    active = c.sum(1, dtype=torch.float64)
    both_active = (c @ c.T).double()
    kernel += 2 * both_active - active[:, None] - active[None, :] + units


def activation_kernel(model: nn.Module, images: Tensor) -> tuple[Tensor, int]:
    """K (float64, N×N) and the number of ReLU calls that fed it."""
    samples = images.shape[0]
    kernel = torch.zeros(samples, samples, dtype=torch.float64, device=images.device)
    calls = 0

    # A pre-hook sees the ReLU input before an in-place ReLU overwrites it.
    def record(_module: nn.Module, args: tuple) -> None:
        nonlocal calls
        calls += 1
        add_agreements(kernel, args[0])

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    handles = [relu.register_forward_pre_hook(record) for relu in relus]
    try:
        model.train()
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return kernel, calls


def log_abs_det(kernel: Tensor, relu_calls: int) -> Score:
    info = {"relu_calls": relu_calls}
    if relu_calls == 0:
        return Score(-math.inf, NO_RELU, info)
    # Equal rows make K exactly singular; slogdet's rounding could otherwise return a huge finite
    # negative number instead of the true -inf.
    if torch.unique(kernel, dim=0).shape[0] < kernel.shape[0]:
        return Score(-math.inf, SINGULAR, info)
    _sign, logabsdet = torch.linalg.slogdet(kernel)
    value = float(logabsdet)
    return Score(value, None if math.isfinite(value) else "K is singular (log|det K| = -inf)", info)


@implements("naswot")
def naswot(model: nn.Module, batch: Batch) -> Score:
    kernel, calls = activation_kernel(model, batch[0])
    return log_abs_det(kernel, calls)
