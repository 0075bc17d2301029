"""NAS-Bench-201 cell strings for search loops, without the service's code: a cell is six edges
(node j <- node i for i < j, nodes 1..3), each one of five operations."""

from __future__ import annotations

import random
from collections.abc import Sequence

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (target node, source node) in the string's order: node 1 <- 0 | node 2 <- 0, 1 | node 3 <- 0, 1, 2
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def genotype(ops: Sequence[str]) -> str:
    """The cell string of six operations given in edge order."""
    if len(ops) != len(EDGES):
        raise ValueError(f"an NB201 cell has {len(EDGES)} edges, got {len(ops)} operations")
    for op in ops:
        if op not in OPS:
            raise ValueError(f"unknown operation {op!r}; choose from {', '.join(OPS)}")
    nodes: list[list[str]] = [[] for _ in range(3)]
    for (target, source), op in zip(EDGES, ops, strict=True):
        nodes[target - 1].append(f"{op}~{source}")
    return "+".join("|" + "|".join(n) + "|" for n in nodes)


def operations(cell: str) -> list[str]:
    """The six operations of a cell string, in edge order."""
    ops = [tok.split("~")[0] for node in cell.split("+") for tok in node.strip("|").split("|")]
    if len(ops) != len(EDGES) or any(op not in OPS for op in ops):
        raise ValueError(f"not an NB201 cell string: {cell!r}")
    return ops


def random_genotype(rng: random.Random) -> str:
    return genotype([rng.choice(OPS) for _ in EDGES])


def mutate(cell: str, rng: random.Random) -> str:
    """Real et al. (2019)'s mutation for NB201: one edge gets a different operation."""
    ops = operations(cell)
    edge = rng.randrange(len(ops))
    ops[edge] = rng.choice([op for op in OPS if op != ops[edge]])
    return genotype(ops)
