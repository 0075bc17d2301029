"""The one registry of search spaces: every consumer (API catalogue, validators, worker) reads it.

Adding a space = its parser in ``app/genotypes/``, its spec here, its builder in ``worker/spaces/``
(``tests/test_specs.py`` fails until all three exist).
"""

from __future__ import annotations

from typing import Literal, get_args

from app.genotypes import SPACES as PARSERS
from app.spaces import darts, nats_sss, nb201
from app.spaces.base import SpaceSpec

SpaceName = Literal["nb201", "nats_sss", "darts", "nb301"]

SPACES: dict[str, SpaceSpec] = {
    spec.name: spec for spec in (nb201.SPEC, nats_sss.SPEC, darts.DARTS, darts.NB301)
}
SPACE_NAMES: tuple[str, ...] = tuple(SPACES)

# The Literal (for typed request models) and the registry must name the same spaces.
if set(get_args(SpaceName)) != set(SPACES) or set(PARSERS) != set(SPACES):
    raise RuntimeError(f"space lists disagree: {get_args(SpaceName)} / {list(PARSERS)} / {list(SPACES)}")


def get_space_spec(name: str) -> SpaceSpec:
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown space {name!r}; allowed: {', '.join(SPACES)}") from None


__all__ = ["SPACES", "SPACE_NAMES", "SpaceName", "SpaceSpec", "get_space_spec"]
