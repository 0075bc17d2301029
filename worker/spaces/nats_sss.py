"""NATS-Bench size-space network: the fixed cell in a 5-layer net whose widths come from the genotype.

Layer i is ``cells.i`` with output width c_i: cells 0, 2, 4 are the fixed cell, cells 1 and 3 the
residual reduction blocks; the stem has width c0. Inside a cell, edges leaving the input node map the
previous width to c_i (skip becomes a 1x1 projection, pooling gets a 1x1 ReLU-Conv-BN first, none
returns zeros of the output shape).
"""

from __future__ import annotations

from app.genotypes import nats_sss as sss_genotype
from app.genotypes import nb201 as nb201_genotype
from worker.spaces.nb201 import CellNetwork

_REDUCTIONS = [False, True, False, True, False]


def build(genotype: str, num_classes: int, options: dict | None = None) -> CellNetwork:
    """The size-space network for ``c0:c1:c2:c3:c4``; this space takes no options."""
    if options:
        raise ValueError(f"unknown nats_sss option(s) {sorted(options)}; the widths come from the genotype")
    channels = list(sss_genotype.parse_channels(genotype))
    cell_ops = nb201_genotype.parse_ops(sss_genotype.CELL)
    return CellNetwork(cell_ops, channels[0], channels, _REDUCTIONS, num_classes)
