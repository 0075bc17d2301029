"""DARTS' ``NetworkCIFAR`` for the ``darts`` and ``nb301`` spaces.

Return value: ``forward`` returns the logits, except with the auxiliary head enabled and the model in
train mode, where it returns ``(logits, aux_logits)`` (the trainer weighs the second loss, 0.4 in
NB301's setup). ``model.auxiliary`` says whether the head exists.

Drop path: the trainer sets ``model.drop_path_prob`` (DARTS ramps it linearly over the epochs); it
applies only in train mode, to every edge output except identities, and works on any device.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from app.genotypes import darts as darts_genotype
from app.spaces.darts import DEFAULT_C, DEFAULT_LAYERS
from worker.spaces.ops import FactorizedReduce, ReLUConvBN, darts_op, drop_path

STEM_MULTIPLIER = 3
AUX_RESOLUTION = 8  # the auxiliary head's layers assume 8x8 feature maps


class DartsCell(nn.Module):
    def __init__(
        self,
        pairs: tuple[tuple[str, int], ...],
        concat: tuple[int, ...],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        # Input 0 is one reduction behind input 1 when the previous cell reduced.
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels, 2)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        self.ops = nn.ModuleList(
            darts_op(op, channels, 2 if reduction and source < darts_genotype.NUM_INPUTS else 1)
            for op, source in pairs
        )
        self._sources = tuple(source for _op, source in pairs)
        self._droppable = tuple(not isinstance(op, nn.Identity) for op in self.ops)
        self.concat = tuple(concat)
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_prob > 0.0
        per_node = darts_genotype.EDGES_PER_NODE
        for first in range(0, len(self.ops), per_node):
            total = None
            for k in range(first, first + per_node):
                out = self.ops[k](states[self._sources[k]])
                if drop and self._droppable[k]:
                    out = drop_path(out, drop_prob)
                total = out if total is None else total + out
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier on 8x8 maps. Its linear layer is ``fc`` on purpose: a name
    containing "classifier" would be unfrozen by FEAR's ``classifier`` identifier."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 → 2x2
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # 2x2 → 1x1
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class NetworkCIFAR(nn.Module):
    """stem (Conv3x3 to 3C, BN) → ``layers`` cells, reducing (and doubling C) at layers//3 and
    2·layers//3 → global pool → ``classifier``; optional ``auxiliary_head`` after cell 2·layers//3."""

    def __init__(
        self,
        genotype: darts_genotype.DartsGenotype,
        num_classes: int,
        C: int = DEFAULT_C,
        layers: int = DEFAULT_LAYERS,
        auxiliary: bool = False,
        input_size: int = 32,
        drop_path_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.drop_path_prob = drop_path_prob
        self._aux_position = 2 * layers // 3
        stem_width = STEM_MULTIPLIER * C
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
        )
        c_prev_prev, c_prev, channels = stem_width, stem_width, C
        resolution = input_size
        reduction_prev = False
        cells = []
        aux_channels, aux_resolution = c_prev, resolution
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                channels *= 2
                resolution = math.ceil(resolution / 2)
            pairs, concat = genotype.cell("reduce" if reduction else "normal")
            cell = DartsCell(pairs, concat, c_prev_prev, c_prev, channels, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * channels
            if i == self._aux_position:
                aux_channels, aux_resolution = c_prev, resolution
        self.cells = nn.ModuleList(cells)
        # The head only fits 8x8 maps (32x32 inputs); elsewhere (16x16 inputs) it is left out.
        self.auxiliary = bool(auxiliary) and aux_resolution == AUX_RESOLUTION
        self.auxiliary_head = AuxiliaryHead(aux_channels, num_classes) if self.auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_position and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        if aux_logits is not None:
            return logits, aux_logits
        return logits


def build(
    genotype: str, num_classes: int, input_size: int, options: dict | None = None, nb301: bool = False
) -> NetworkCIFAR:
    """``options``: ``C`` (32), ``layers`` (8), ``auxiliary`` (False), ``drop_path`` (0.0)."""
    opts = dict(options or {})
    C = _positive_int(opts.pop("C", DEFAULT_C), "C")
    layers = _positive_int(opts.pop("layers", DEFAULT_LAYERS), "layers")
    auxiliary = opts.pop("auxiliary", False)
    if not isinstance(auxiliary, bool):
        raise ValueError(f"option auxiliary must be true or false, got {auxiliary!r}")
    drop = opts.pop("drop_path", 0.0)
    if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0.0 <= drop < 1.0:
        raise ValueError(f"option drop_path must be a number in [0, 1), got {drop!r}")
    if opts:
        raise ValueError(f"unknown darts option(s) {sorted(opts)}; allowed: C, layers, auxiliary, drop_path")
    parsed = darts_genotype.parse_genotype(genotype, nb301=nb301)
    return NetworkCIFAR(parsed, num_classes, C, layers, auxiliary, input_size, float(drop))


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"option {name} must be a positive integer, got {value!r}")
    return value
