"""Op modules shared by the NB201/NATS and DARTS networks.

Conventions of the reference implementations: convs have no bias, BatchNorm is affine with running
statistics, ReLU comes first ("ReLU-Conv-BN"), and no op modifies its input in place (a cell feeds
the same tensor to several edges).
"""

from __future__ import annotations

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int = 1
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape, still connected to the graph when shapes allow.

    Multiplying by 0 (rather than returning fresh zeros) keeps gradients defined (zero) for the
    layers before it, which gradient-based proxies expect.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c_in = c_in
        self.c_out = c_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.c_in == self.c_out:
            return x.mul(0.0)
        return x.new_zeros((x.shape[0], self.c_out, x.shape[2], x.shape[3]))

    def extra_repr(self) -> str:
        return f"c_in={self.c_in}, c_out={self.c_out}, stride={self.stride}"


class FactorizedReduce(nn.Module):
    """A 1x1 projection that may halve the resolution.

    Stride 2: ReLU, then two stride-2 1x1 convs producing half the channels each, the second on
    the input shifted by one pixel (so together they see every pixel), concatenated, then BN.
    Stride 1 (NATS: ``skip_connect`` between different widths): 1x1 conv then BN, no ReLU.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FactorizedReduce supports stride 1 or 2, got {stride}")
        self.stride = stride
        if stride == 2:
            self.relu = nn.ReLU(inplace=False)
            half = c_out // 2
            self.convs = nn.ModuleList(
                [
                    nn.Conv2d(c_in, half, 1, stride=2, bias=False),
                    nn.Conv2d(c_in, c_out - half, 1, stride=2, bias=False),
                ]
            )
        else:
            self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return self.bn(self.conv(x))
        x = self.relu(x)
        # Padding right/bottom before dropping the first row/column keeps both halves the same
        # size for odd resolutions too.
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1))


class Pooling(nn.Module):
    """3x3 avg/max pooling; a ReLU-Conv1x1-BN adapts the width first when c_in != c_out (NATS)."""

    def __init__(self, c_in: int, c_out: int, stride: int, mode: str) -> None:
        super().__init__()
        self.preprocess = ReLUConvBN(c_in, c_out, 1, 1, 0) if c_in != c_out else None
        if mode == "avg":
            self.pool: nn.Module = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        elif mode == "max":
            self.pool = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            raise ValueError(f"pooling mode must be 'avg' or 'max', got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.pool(x)


class DilConv(nn.Sequential):
    """ReLU → depthwise k×k conv (dilated) → 1x1 conv → BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    """Two ReLU → depthwise conv → 1x1 conv → BN passes; only the first carries the stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, dilation=1),
            DilConv(c_in, c_out, kernel, 1, padding, dilation=1),
        )


class ResidualReduction(nn.Module):
    """NB201's reduction block: ReLU-Conv3x3(stride 2)-BN → ReLU-Conv3x3-BN, plus a shortcut of
    AvgPool2d(2, 2) → Conv1x1 (no BN); the sum is returned without a final ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (DARTS' drop path).

    The mask is drawn on ``x``'s own device and dtype, so it works on CPU and GPU alike.
    """
    if drop_prob <= 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    mask = torch.empty((x.shape[0], 1, 1, 1), device=x.device, dtype=x.dtype).bernoulli_(keep_prob)
    return x * (mask / keep_prob)


def nb201_op(name: str, c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    """An NB201/NATS edge op; widths may differ on edges leaving a NATS cell's input node."""
    if name == "none":
        return Zero(c_in, c_out, stride)
    if name == "skip_connect":
        if stride == 1 and c_in == c_out:
            return nn.Identity()
        return FactorizedReduce(c_in, c_out, stride)
    if name == "nor_conv_1x1":
        return ReLUConvBN(c_in, c_out, 1, stride, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c_in, c_out, 3, stride, 1)
    if name == "avg_pool_3x3":
        return Pooling(c_in, c_out, stride, "avg")
    raise ValueError(f"unknown nb201 op {name!r}")


def darts_op(name: str, channels: int, stride: int) -> nn.Module:
    """A DARTS edge op at constant width ``channels``."""
    if name == "none":
        return Zero(channels, channels, stride)
    if name == "max_pool_3x3":
        return Pooling(channels, channels, stride, "max")
    if name == "avg_pool_3x3":
        return Pooling(channels, channels, stride, "avg")
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, stride)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        kernel = 3 if name == "sep_conv_3x3" else 5
        return SepConv(channels, channels, kernel, stride, kernel // 2)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        kernel = 3 if name == "dil_conv_3x3" else 5
        return DilConv(channels, channels, kernel, stride, padding=kernel - 1, dilation=2)
    raise ValueError(f"unknown darts op {name!r}")
