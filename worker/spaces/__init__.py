"""Network builders: ``build(NetworkSpec)`` → ``nn.Module`` returning logits for a batch.

Exception: a DARTS/NB301 network built with ``options["auxiliary"]`` returns ``(logits, aux_logits)``
in train mode (see ``worker.spaces.darts``). Which options a space takes, their defaults and FEAR's
freeze rule are the torch-free space spec's (``app.spaces``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from app.catalog.base import NetworkOptions
from app.spaces import SPACE_NAMES, get_space_spec
from worker.spaces import darts, nats_sss, nb201
from worker.spaces.base import NetworkSpec
from worker.spaces.counting import count_flops, count_params

SpaceBuilder = Callable[[NetworkSpec], nn.Module]

BUILDERS: dict[str, SpaceBuilder] = {
    "nb201": lambda spec: nb201.build(spec.genotype, spec.num_classes, spec.options),
    "nats_sss": lambda spec: nats_sss.build(spec.genotype, spec.num_classes, spec.options),
    "darts": lambda spec: darts.build(spec.genotype, spec.num_classes, spec.input_size, spec.options),
    "nb301": lambda spec: darts.build(
        spec.genotype, spec.num_classes, spec.input_size, spec.options, nb301=True
    ),
}


def build(spec: NetworkSpec) -> nn.Module:
    """Build the network for ``spec`` (genotype in any form its space's parser accepts)."""
    if isinstance(spec.num_classes, bool) or not isinstance(spec.num_classes, int) or spec.num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {spec.num_classes!r}")
    builder = BUILDERS.get(spec.space)
    if builder is None:
        raise ValueError(f"unknown space {spec.space!r}; allowed: {', '.join(SPACE_NAMES)}")
    return builder(spec)


def unfreeze_default(space: str, options: dict[str, Any] | None = None) -> list[str]:
    """FEAR stage-2 default (``app.spaces``): parameters inside these modules stay trainable."""
    return get_space_spec(space).default_unfreeze(NetworkOptions.model_validate(options or {}))


__all__ = [
    "BUILDERS",
    "SPACE_NAMES",
    "NetworkSpec",
    "build",
    "count_flops",
    "count_params",
    "unfreeze_default",
]
