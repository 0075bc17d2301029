"""NAS-Bench-201 topology space: the benchmark's tiny network, N cells per stage at C, 2C, 4C."""

from __future__ import annotations

from app.catalog.base import NetworkOptions
from app.genotypes import nb201
from app.spaces.base import SpaceSpec

DEFAULT_C = 16
DEFAULT_N = 5
TOP_MODULES = ("stem", "cells", "lastact", "global_pooling", "classifier")


def cell_count(network: NetworkOptions) -> int:
    """3 stages of N cells plus 2 residual reduction blocks."""
    return 3 * int(network.N or DEFAULT_N) + 2


def unfreeze(network: NetworkOptions) -> list[str]:
    n = int(network.N or DEFAULT_N)
    total = 3 * n + 2
    count = min(n, max(1, round(4 * n / 5)))
    return [f"cells.{i}" for i in range(total - count, total)] + ["lastact", "classifier"]


SPEC = SpaceSpec(
    name=nb201.SPACE.name,
    genotype=nb201.SPACE,
    defaults={"C": DEFAULT_C, "N": DEFAULT_N},
    top_modules=TOP_MODULES,
    cell_count=cell_count,
    unfreeze_rule=unfreeze,
    unfreeze_rule_text=(
        "the last round(4N/5) cells of the final stage (at least one), lastact and classifier; "
        "N=5 gives the authors' cells.13..cells.16"
    ),
)
