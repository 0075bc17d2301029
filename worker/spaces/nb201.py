"""NAS-Bench-201's "tiny network" (topology space) and the cell shared with the NATS size space.

Module names are part of the contract: FEAR's freeze rule addresses ``cells.<i>``, ``lastact`` and
``classifier`` by name.
"""

from __future__ import annotations

import torch
from torch import nn

from app.genotypes import nb201 as nb201_genotype
from app.spaces.nb201 import DEFAULT_C, DEFAULT_N
from worker.spaces.ops import ResidualReduction, nb201_op

Plan = tuple[tuple[tuple[int, int], ...], ...]  # per node: its (edge position, source node) pairs


def run_cell(edges: nn.ModuleList, plan: Plan, x: torch.Tensor) -> torch.Tensor:
    """A cell's forward: each node sums its incoming edges in edge order; the last node is the output.
    (The stacked cell of ``nb201_stacked`` runs the same sums, which keeps it bitwise.)"""
    states = [x]
    for inputs in plan:
        total: torch.Tensor | None = None
        for k, source in inputs:
            out = edges[k](states[source])
            total = out if total is None else total + out
        assert total is not None  # every node has at least one incoming edge
        states.append(total)
    return states[-1]


class TopologyCell(nn.Module):
    """A 4-node NB201 cell. ``edges[k]`` is the op on ``nb201_genotype.EDGES[k]``.

    Edges leaving the input node map ``c_in`` → ``c_out``; all other edges keep ``c_out``
    (widths differ only in the NATS size space).
    """

    def __init__(self, ops: tuple[str, ...], c_in: int, c_out: int) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.edges = nn.ModuleList(
            nb201_op(op, c_in if source == 0 else c_out, c_out)
            for op, (source, _node) in zip(self.ops, nb201_genotype.EDGES, strict=True)
        )
        # For each node, the (edge position, source) pairs feeding it, resolved once.
        self._plan = tuple(
            tuple((k, source) for k, (source, target) in enumerate(nb201_genotype.EDGES) if target == node)
            for node in range(1, nb201_genotype.NUM_NODES + 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_cell(self.edges, self._plan, x)

    def extra_repr(self) -> str:
        return nb201_genotype.to_string(self.ops)


class CellNetwork(nn.Module):
    """stem → cells (cells and residual reductions) → lastact (BN, ReLU) → global pool → classifier.

    ``widths[i]`` is the output width of ``cells.i``; ``reductions[i]`` marks the residual blocks.
    """

    def __init__(
        self,
        ops: tuple[str, ...],
        stem_width: int,
        widths: list[int],
        reductions: list[bool],
        num_classes: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
        )
        cells = []
        c_prev = stem_width
        for width, reduction in zip(widths, reductions, strict=True):
            cells.append(ResidualReduction(c_prev, width) if reduction else TopologyCell(ops, c_prev, width))
            c_prev = width
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(x.flatten(1))


def build_tiny_network(
    ops: tuple[str, ...], num_classes: int, C: int = DEFAULT_C, N: int = DEFAULT_N
) -> CellNetwork:
    """N cells at C, reduction to 2C, N cells at 2C, reduction to 4C, N cells at 4C."""
    widths = [C] * N + [2 * C] + [2 * C] * N + [4 * C] + [4 * C] * N
    reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
    return CellNetwork(ops, C, widths, reductions, num_classes)


def build(genotype: str, num_classes: int, options: dict | None = None) -> CellNetwork:
    """The tiny network for an NB201 string; ``options``: ``C`` (default 16), ``N`` (default 5)."""
    opts = dict(options or {})
    C = _positive_int(opts.pop("C", DEFAULT_C), "C")
    N = _positive_int(opts.pop("N", DEFAULT_N), "N")
    if opts:
        raise ValueError(f"unknown nb201 option(s) {sorted(opts)}; allowed: C, N")
    return build_tiny_network(nb201_genotype.parse_ops(genotype), num_classes, C=C, N=N)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"option {name} must be a positive integer, got {value!r}")
    return value
