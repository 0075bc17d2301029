"""DARTS' NetworkCIFAR for the ``darts`` and ``nb301`` spaces (NB301's training setup: C=32, 8 cells)."""

from __future__ import annotations

from app.catalog.base import NetworkOptions
from app.genotypes import darts
from app.spaces.base import SpaceSpec

DEFAULT_C = 32
DEFAULT_LAYERS = 8
AUXILIARY_INPUT = 32  # the auxiliary head's layers assume 8x8 maps after two reductions
DEFAULTS = {"C": DEFAULT_C, "layers": DEFAULT_LAYERS, "auxiliary": False, "drop_path": 0.0}


def cell_count(network: NetworkOptions) -> int:
    return int(network.layers or DEFAULT_LAYERS)


def unfreeze(network: NetworkOptions) -> list[str]:
    layers = cell_count(network)
    start = min(layers // 3 + 1, layers - 1)
    return [f"cells.{i}" for i in range(start, layers)] + ["classifier"]


def _spec(space: darts.DartsSpace) -> SpaceSpec:
    return SpaceSpec(
        name=space.name,
        genotype=space,
        defaults=dict(DEFAULTS),
        top_modules=("stem", "cells", "global_pooling", "classifier"),
        cell_count=cell_count,
        unfreeze_rule=unfreeze,
        unfreeze_rule_text=(
            "every cell after the first reduction cell, and the classifier (8 cells: the authors' "
            "cells.3..cells.7)"
        ),
        min_input_for_auxiliary=AUXILIARY_INPUT,
    )


DARTS = _spec(darts.DARTS)
NB301 = _spec(darts.NB301)
