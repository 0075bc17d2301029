"""Dataset contract: a whole split lives on the worker's device as one tensor; batches are views."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class DataRequest:
    """Which data a method needs. Built from a method's resolved ``data`` config (see
    ``app.catalog.common.DataOptions``) plus the batch's dataset name."""

    dataset: str  # synthetic_cifar10 | cifar10 | cifar100 | imagenet16_120 | cifar10_folder | ...
    train_size: int | None = None  # seeded subset of the train split; None = all
    test_size: int | None = None
    subset_seed: int = 0
    synthetic: dict[str, Any] = field(default_factory=dict)  # per_class, train_per_class, draw_budget, seed
    # The caller reads only ``fixed_batch`` (zero-cost measures). A generated dataset then draws just
    # the stream prefix each fixed batch needs (see worker/data/synthetic.py) unless a train subset
    # is asked for, which needs the whole split; file datasets are read in full as before.
    fixed_batch_only: bool = False
    # "all", or one half of NAS-Bench-201's test split ("x-valid" / "x-test") read from the dataset's
    # split file; a test subset (``test_size``) is then drawn from within that half.
    test_split: str = "all"


@dataclass(frozen=True)
class GenerationProgress:
    """How far a synthetic generation has got; reported through a ``ProgressCallback``."""

    wanted: str  # "full" or "first N train images"
    accepted_per_class: tuple[int, ...]
    per_class: int  # the cap each class fills up to
    draws: int
    draw_budget: int

    def fields(self) -> dict[str, Any]:
        """The live-progress fields (JSON) a worker stores for its evaluation."""
        return {
            "generating": self.wanted,
            "accepted_per_class": list(self.accepted_per_class),
            "per_class": self.per_class,
            "draws": self.draws,
            "draw_budget": self.draw_budget,
            "draw_budget_pct": round(100.0 * self.draws / self.draw_budget, 1),
        }


ProgressCallback = Callable[[GenerationProgress], None]


class DeviceDataset(Protocol):
    name: str
    num_classes: int
    input_size: int  # 32 or 16
    device: torch.device
    info: dict[str, Any]  # sizes, class counts, source path, generation time ...

    def train_batches(
        self, batch_size: int, generator: torch.Generator, *, augment: bool = True, cutout: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented, normalised float32 minibatches (x, y) on ``device``.
        The last partial batch is kept. Augmentation follows the dataset's default policy; ``augment``
        False disables it, ``cutout`` > 0 adds cutout of that side length."""
        ...

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test split in order, normalised, no augmentation."""
        ...

    def fixed_batch(self, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A deterministic, normalised, un-augmented train minibatch chosen by ``seed``:
        every architecture in a comparison sees the same images (zero-cost measures)."""
        ...
