"""Torch-free contract shared by every search space's genotype module.

The API validates and canonicalises genotypes with these modules before anything is stored, so
they must never import torch. The worker rebuilds networks from ``ParsedArch.canonical``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class GenotypeError(ValueError):
    """A genotype was rejected.

    ``location`` names the place (e.g. ``"node 2, edge 1"``) and ``message`` says what is wrong and
    what is allowed; the API turns it into a 422 under the item's field path.
    """

    def __init__(self, message: str, location: str | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


@dataclass(frozen=True)
class ParsedArch:
    """A validated architecture in canonical form."""

    space: str
    canonical: str  # canonical text form; the worker builds the network from this
    key: str  # identity key, unique per space (dedupe)
    index: int | None = None  # the benchmark's own index where the space has one
    iso_key: str | None = None  # isomorphism class key (nb201)
    degenerate: bool = False  # output does not depend on the input (nb201)
    extra: dict[str, Any] = field(default_factory=dict)


class SpaceDef(Protocol):
    """What the API needs from a search space (one module per space implements it)."""

    name: str
    description: str
    ops: tuple[str, ...]
    example: str  # an example genotype string accepted by ``parse``
    has_index: bool
    index_count: int | None  # number of architectures addressable by index, if any

    def parse(self, raw: Any) -> ParsedArch:
        """Validate and canonicalise a genotype (string or, where allowed, a JSON object)."""
        ...

    def from_index(self, index: int) -> ParsedArch:
        """The architecture with the benchmark's index (GenotypeError if out of range/unsupported)."""
        ...
