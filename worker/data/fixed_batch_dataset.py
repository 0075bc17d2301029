"""A dataset for callers that read only fixed batches: each batch generates just the stream prefix it needs.

Zero-cost measures read one fixed batch of 64-128 images. For ``synthetic_cifar10`` that batch is the
first ``size`` train images of the generator's stream, in the seed's order (``fixed_batch`` of a
dataset holding exactly that prefix), so it never waits for the full 60,000-image set. The prefix is
also what a full set's first ``size`` train images are, so results do not depend on what is cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from worker.data.base import ProgressCallback
from worker.data.device_dataset import DeviceTensorDataset

_EPOCHS_REFUSED = "{name} was loaded for fixed batches only; request it without fixed_batch_only"


class FixedBatchDataset:
    """Implements ``worker.data.base.DeviceDataset`` for ``fixed_batch``; epochs are refused."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        input_size: int,
        device: torch.device,
        load_prefix: Callable[[int, ProgressCallback | None], DeviceTensorDataset],
        info: dict[str, Any],
        progress: ProgressCallback | None = None,
    ) -> None:
        self.name = name
        self.num_classes = num_classes
        self.input_size = input_size
        self.device = torch.device(device)
        self.info = dict(info)
        self._load_prefix = load_prefix
        # Replaced by ``load_dataset`` on every request: generation reports to the current caller,
        # never to the evaluation that first created this (cached) object.
        self.progress = progress
        self._prefixes: dict[int, DeviceTensorDataset] = {}
        self._lock = threading.Lock()

    def prefix(self, size: int) -> DeviceTensorDataset:
        """The dataset of the first ``size`` train images (generated or read once, then kept)."""
        with self._lock:
            if size not in self._prefixes:
                self._prefixes[size] = self._load_prefix(size, self.progress)
                self.info.update(self._prefixes[size].info)
            return self._prefixes[size]

    def fixed_batch(self, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        if size < 1:
            raise ValueError(f"fixed batch of {size} images requested; it must be at least 1")
        return self.prefix(size).fixed_batch(size, seed)

    def train_batches(
        self, batch_size: int, generator: torch.Generator, *, augment: bool = True, cutout: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise RuntimeError(_EPOCHS_REFUSED.format(name=self.name))

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise RuntimeError(_EPOCHS_REFUSED.format(name=self.name))
