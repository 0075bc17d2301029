"""Model size: parameter count and multiply-add count, as NAS-Bench-201 reports them."""

from __future__ import annotations

import torch
from torch import nn

AUXILIARY_PREFIX = "auxiliary_head."


def count_params(model: nn.Module, include_auxiliary: bool = False) -> int:
    """Number of parameters. DARTS' auxiliary head is left out by default, as DARTS reports sizes."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if include_auxiliary or not name.startswith(AUXILIARY_PREFIX)
    )


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    positions = output.shape[2] * output.shape[3]
    kh, kw = module.kernel_size
    macs = positions * module.out_channels * (module.in_channels // module.groups) * kh * kw
    if module.bias is not None:
        macs += positions * module.out_channels
    return macs


def _linear_macs(module: nn.Linear) -> int:
    macs = module.in_features * module.out_features
    if module.bias is not None:
        macs += module.out_features
    return macs


@torch.no_grad()
def count_flops(model: nn.Module, input_size: int, in_channels: int = 3) -> int:
    """Multiply-adds of the Conv2d and Linear layers for one image (bias adds counted, as NB201 does).

    Runs one forward pass in eval mode (so training-only branches such as an auxiliary head are
    not counted) on a zero image on the model's device, then restores the model's mode.
    """
    total = 0

    def on_conv(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, output)  # type: ignore[arg-type]

    def on_linear(module: nn.Module, _inputs: tuple, _output: torch.Tensor) -> None:
        nonlocal total
        total += _linear_macs(module)  # type: ignore[arg-type]

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, in_channels, input_size, input_size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
