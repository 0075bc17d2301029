"""Search-space registry: torch-free genotype parsing for every supported space.

``get_space("nb201").parse(raw)`` validates and canonicalises; ``from_index`` maps a benchmark index.
"""

from __future__ import annotations

from app.genotypes import darts, nats_sss, nb201
from app.genotypes._text import show
from app.genotypes.base import GenotypeError, ParsedArch, SpaceDef

SPACES: dict[str, SpaceDef] = {
    nb201.SPACE.name: nb201.SPACE,
    nats_sss.SPACE.name: nats_sss.SPACE,
    darts.DARTS.name: darts.DARTS,
    darts.NB301.name: darts.NB301,
}


def get_space(name: str) -> SpaceDef:
    """The space called ``name``; ``GenotypeError`` naming the allowed spaces otherwise."""
    space = SPACES.get(name) if isinstance(name, str) else None
    if space is None:
        raise GenotypeError(f"unknown space {show(name)}; allowed: {', '.join(SPACES)}", "space")
    return space


__all__ = ["SPACES", "GenotypeError", "ParsedArch", "SpaceDef", "get_space"]
