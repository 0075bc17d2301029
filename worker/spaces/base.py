"""Uniform network-builder interface: space name + canonical genotype → ``nn.Module`` returning logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import nn


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to build a network. ``options`` holds space-specific knobs
    (nb201: ``C``, ``N``; darts/nb301: ``C``, ``layers``, ``auxiliary``, ``drop_path``); a missing
    key means the space's default."""

    space: str
    genotype: str  # canonical form from app.genotypes
    num_classes: int
    input_size: int  # 32 (CIFAR) or 16 (ImageNet16-120)
    options: dict | None = None


class Builder(Protocol):
    def __call__(self, spec: NetworkSpec) -> nn.Module: ...
