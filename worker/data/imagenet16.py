"""ImageNet16-120: NAS-Bench-201's 16x16 downsampled ImageNet restricted to its first 120 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from app.catalog.datasets import require_available
from worker.data.cifar import read_pickled_batch
from worker.data.raw import RawSplits

KEPT_CLASSES = 120


def _load_split(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in files:
        data, batch_labels = read_pickled_batch("imagenet16_120", path, "labels", image_size=16)
        # Labels are 1-based over 1000 classes; filtering file by file keeps the peak memory at one
        # file instead of the whole 1.28M-image train set.
        keep = (batch_labels >= 1) & (batch_labels <= KEPT_CLASSES)
        images.append(data[keep])
        labels.append(batch_labels[keep] - 1)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load_imagenet16_120(data_dir: Path) -> RawSplits:
    root = require_available("imagenet16_120", data_dir)
    train_x, train_y = _load_split([root / f"train_data_batch_{i}" for i in range(1, 11)])
    test_x, test_y = _load_split([root / "val_data"])
    return RawSplits(train_x, train_y, test_x, test_y, source=str(root))
