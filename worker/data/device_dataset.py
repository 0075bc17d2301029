"""The device-resident dataset: each split is one tensor on the training device, batches are gathers.

Real images stay uint8 (4x less memory and bandwidth) and are normalised per batch; synthetic images
are float32 N(0, 1) values used as they are. Every random choice of an epoch (order, crop offsets,
flips, cutout centres) is drawn up front from the caller's generator, in that order, so an epoch is
reproducible from the generator's state alone, whatever the device.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch

from app.catalog.datasets import DatasetInfo
from worker.data.augment import crop_and_flip, cutout_
from worker.data.base import DataRequest
from worker.data.raw import RawSplits


@contextlib.contextmanager
def _one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Assembling a batch is a few memory-bound copies of ~1 MB. Split over threads they gain little,
    and when the cores are busy (other workers, the training step's own threads) every parallel region
    waits for its slowest thread: measured on 2 loaded cores, 2k images/s with 2 threads against 80k
    with 1. So CPU batches are built on one thread; the setting is restored before the batch is used."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class DeviceTensorDataset:
    """Implements ``worker.data.base.DeviceDataset``."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        device: torch.device,
        *,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        crop_padding: int = 0,
        flip: bool = False,
        info: dict[str, Any] | None = None,
    ) -> None:
        if train_x.shape[1:] != test_x.shape[1:] or train_x.shape[-1] != train_x.shape[-2]:
            raise ValueError(
                f"splits must hold square images of one shape: {train_x.shape} vs {test_x.shape}"
            )
        self.name = name
        self.num_classes = num_classes
        self.input_size = int(train_x.shape[-1])
        self.device = torch.device(device)
        self.crop_padding = crop_padding
        self.flip = flip
        self.train_x = train_x.to(self.device)
        self.train_y = train_y.to(self.device, torch.int64)
        self.test_x = test_x.to(self.device)
        self.test_y = test_y.to(self.device, torch.int64)
        # Normalisation as one multiply-add: (x / 255 - mean) / std = x * scale + shift for uint8.
        channels = train_x.shape[1]
        to_unit = 1.0 / 255.0 if train_x.dtype == torch.uint8 else 1.0
        mean_t = torch.tensor(mean if mean is not None else (0.0,) * channels, dtype=torch.float64)
        std_t = torch.tensor(std if std is not None else (1.0,) * channels, dtype=torch.float64)
        self._scale = (to_unit / std_t).to(self.device, torch.float32).view(1, -1, 1, 1)
        self._shift = (-mean_t / std_t).to(self.device, torch.float32).view(1, -1, 1, 1)
        self.info = dict(info or {})

    @property
    def train_size(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.test_y.shape[0])

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """A new float32 tensor: callers may modify batches in place without touching the dataset."""
        return images.to(torch.float32, copy=True).mul_(self._scale).add_(self._shift)

    def train_batches(
        self, batch_size: int, generator: torch.Generator, *, augment: bool = True, cutout: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch; crop/flip follow the dataset's policy when ``augment``, cutout whenever
        ``cutout`` > 0 (an explicit request, so it applies to every dataset)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n, side = self.train_size, self.input_size
        draw_on = generator.device
        order = torch.randperm(n, generator=generator, device=draw_on).to(self.device)
        padding = self.crop_padding if augment else 0
        offsets = flips = centres = None
        if padding:
            offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=draw_on)
            offsets = offsets.to(self.device)
        if augment and self.flip:
            flips = torch.randint(0, 2, (n,), generator=generator, device=draw_on).to(self.device).bool()
        if cutout > 0:
            centres = torch.randint(0, side, (n, 2), generator=generator, device=draw_on).to(self.device)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            with _one_thread_on_cpu(self.device):
                batch = self._assemble(
                    order[start:stop],
                    padding,
                    None if offsets is None else offsets[start:stop],
                    None if flips is None else flips[start:stop],
                    None if centres is None else centres[start:stop],
                    cutout,
                )
            yield batch

    def _assemble(
        self,
        picked: torch.Tensor,
        padding: int,
        offsets: torch.Tensor | None,
        flips: torch.Tensor | None,
        centres: torch.Tensor | None,
        cutout: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # index_select copies whole rows; plain indexing goes through a per-element kernel (~15x slower).
        images = self.train_x.index_select(0, picked)
        if offsets is not None or flips is not None:
            if offsets is None:  # flip only: a crop window at the origin of an unpadded image
                offsets = torch.zeros(picked.shape[0], 2, dtype=torch.int64, device=self.device)
            images = crop_and_flip(images, offsets, flips, padding)
        images = self.normalise(images)
        if centres is not None:
            cutout_(images, centres, cutout)
        return images, self.train_y.index_select(0, picked)

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        for start in range(0, self.test_size, batch_size):
            stop = min(start + batch_size, self.test_size)
            with _one_thread_on_cpu(self.device):
                images = self.normalise(self.test_x[start:stop])
            yield images, self.test_y[start:stop]

    def fixed_batch(self, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 1 <= size <= self.train_size:
            raise ValueError(
                f"fixed batch of {size} images requested from a train split of {self.train_size}"
            )
        # A CPU generator of its own: the same seed picks the same images on every device and process.
        chosen = torch.randperm(self.train_size, generator=torch.Generator().manual_seed(seed))[:size]
        chosen = chosen.to(self.device)
        return self.normalise(self.train_x.index_select(0, chosen)), self.train_y.index_select(0, chosen)


def choose_subsets(
    train_total: int, test_total: int, request: DataRequest
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Sorted indices of the seeded train/test subsets (None = the whole split).

    Both permutations are always drawn, train first, so the test subset does not depend on whether a
    train subset was asked for, and a smaller subset is a subset of a larger one for the same seed.
    """
    for wanted, total, split in (
        (request.train_size, train_total, "train"),
        (request.test_size, test_total, "test"),
    ):
        if wanted is not None and not 1 <= wanted <= total:
            raise ValueError(
                f"{request.dataset}: requested a {split} subset of {wanted} images but the {split} split "
                f"holds {total}"
            )
    generator = torch.Generator().manual_seed(request.subset_seed)
    train_order = torch.randperm(train_total, generator=generator)
    test_order = torch.randperm(test_total, generator=generator)
    train = None if request.train_size is None else train_order[: request.train_size].sort().values
    test = None if request.test_size is None else test_order[: request.test_size].sort().values
    return train, test


def build_device_dataset(
    raw: RawSplits, catalog: DatasetInfo, request: DataRequest, device: torch.device
) -> DeviceTensorDataset:
    started = time.perf_counter()
    train, test = choose_subsets(raw.train_y.shape[0], raw.test_y.shape[0], request)
    train_x, train_y = (
        (raw.train_x, raw.train_y) if train is None else (raw.train_x[train], raw.train_y[train])
    )
    test_x, test_y = (raw.test_x, raw.test_y) if test is None else (raw.test_x[test], raw.test_y[test])
    if train_x.shape[-1] != catalog.input_size:
        raise ValueError(
            f"{catalog.name}: images are {train_x.shape[-1]} pixels wide, expected {catalog.input_size}"
        )
    info = {
        **raw.info,
        "name": catalog.name,
        "source": raw.source,
        "device": str(device),
        "storage_dtype": str(train_x.dtype).removeprefix("torch."),
        "train_size": int(train_y.shape[0]),
        "test_size": int(test_y.shape[0]),
        "full_train_size": int(raw.train_y.shape[0]),
        "full_test_size": int(raw.test_y.shape[0]),
        "subset_seed": request.subset_seed,
        "train_class_counts": torch.bincount(train_y, minlength=catalog.num_classes).tolist(),
        "test_class_counts": torch.bincount(test_y, minlength=catalog.num_classes).tolist(),
        "normalisation": None if catalog.mean is None else {"mean": catalog.mean, "std": catalog.std},
        "augmentation": {"crop_padding": catalog.crop_padding, "flip": catalog.flip},
    }
    dataset = DeviceTensorDataset(
        catalog.name,
        catalog.num_classes,
        train_x,
        train_y,
        test_x,
        test_y,
        device,
        mean=catalog.mean,
        std=catalog.std,
        crop_padding=catalog.crop_padding,
        flip=catalog.flip,
        info=info,
    )
    dataset.info["to_device_seconds"] = round(time.perf_counter() - started, 3)
    return dataset
