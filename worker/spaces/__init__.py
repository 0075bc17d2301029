"""Network builders: ``build(NetworkSpec)`` → ``nn.Module`` returning logits for a batch.

Exception: a DARTS/NB301 network built with ``options["auxiliary"]`` returns ``(logits, aux_logits)``
in train mode (see ``worker.spaces.darts``).
"""

from __future__ import annotations

from torch import nn

from worker.spaces import darts, nats_sss, nb201
from worker.spaces.base import NetworkSpec
from worker.spaces.counting import count_flops, count_params

SPACE_NAMES: tuple[str, ...] = ("nb201", "nats_sss", "darts", "nb301")


def build(spec: NetworkSpec) -> nn.Module:
    """Build the network for ``spec`` (genotype in any form its space's parser accepts)."""
    if isinstance(spec.num_classes, bool) or not isinstance(spec.num_classes, int) or spec.num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {spec.num_classes!r}")
    if spec.space == "nb201":
        return nb201.build(spec.genotype, spec.num_classes, spec.options)
    if spec.space == "nats_sss":
        return nats_sss.build(spec.genotype, spec.num_classes, spec.options)
    if spec.space in ("darts", "nb301"):
        return darts.build(
            spec.genotype, spec.num_classes, spec.input_size, spec.options, nb301=spec.space == "nb301"
        )
    raise ValueError(f"unknown space {spec.space!r}; allowed: {', '.join(SPACE_NAMES)}")


def unfreeze_default(space: str, options: dict | None = None) -> list[str]:
    """FEAR stage-2 default: parameters whose name contains one of these stay trainable.

    nb201: the last round(4N/5) cells of the final stage (≥ 1), ``lastact``, ``classifier``
    (N=5: ``cells.13``..``cells.16``); nats_sss: ``cells.4``, ``lastact``, ``classifier``;
    darts/nb301: every cell after the first reduction cell and ``classifier`` (8 layers:
    ``cells.3``..``cells.7``).
    """
    if space == "nb201":
        return nb201.unfreeze_identifiers(options)
    if space == "nats_sss":
        return nats_sss.unfreeze_identifiers(options)
    if space in ("darts", "nb301"):
        return darts.unfreeze_identifiers(options)
    raise ValueError(f"unknown space {space!r}; allowed: {', '.join(SPACE_NAMES)}")


__all__ = ["SPACE_NAMES", "NetworkSpec", "build", "count_flops", "count_params", "unfreeze_default"]
