"""NATS-Bench size space: the fixed cell, one per stage; every width comes from the genotype."""

from __future__ import annotations

from app.catalog.base import NetworkOptions
from app.genotypes import nats_sss
from app.spaces.base import SpaceSpec
from app.spaces.nb201 import TOP_MODULES

CELLS = 5  # one cell per stage plus two reduction blocks


def unfreeze(network: NetworkOptions) -> list[str]:
    return [f"cells.{CELLS - 1}", "lastact", "classifier"]


SPEC = SpaceSpec(
    name=nats_sss.SPACE.name,
    genotype=nats_sss.SPACE,
    defaults={},
    top_modules=TOP_MODULES,
    cell_count=lambda _network: CELLS,
    unfreeze_rule=unfreeze,
    unfreeze_rule_text="the last cell (the whole final stage, cells.4), lastact and classifier",
)
