"""A dataset as loaded from disk (or generated), before it is subset and moved to the device."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class RawSplits:
    train_x: torch.Tensor  # (N, 3, S, S), uint8 for real images, float32 for synthetic ones; CHW
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str  # the folder or cache file it came from
    info: dict[str, Any] = field(default_factory=dict)  # loader facts (generation time, draws, ...)

    def __post_init__(self) -> None:
        for x, y, split in ((self.train_x, self.train_y, "train"), (self.test_x, self.test_y, "test")):
            if x.ndim != 4 or x.shape[0] != y.shape[0] or y.ndim != 1:
                raise ValueError(
                    f"{split} split: images {tuple(x.shape)} do not match labels {tuple(y.shape)}"
                )
