"""CIFAR-10 and CIFAR-100 from torchvision's python-pickle folders (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from app.catalog.datasets import DatasetUnavailable, get_dataset, require_available
from worker.data.raw import RawSplits
from worker.data.safe_pickle import load_dataset_pickle


def read_pickled_batch(
    dataset: str, path: Path, label_key: str, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(data, labels)`` of one pickled batch: data uint8 (N, 3, S, S), labels int64 (N,).

    Anything unexpected (unreadable pickle, foreign globals, missing keys, wrong shapes or dtypes)
    becomes ``DatasetUnavailable`` naming the file, since only the operator can fix it.
    """
    layout = get_dataset(dataset).layout

    def fail(problem: str) -> DatasetUnavailable:
        return DatasetUnavailable(dataset, path, problem, layout)

    if not path.is_file():
        raise fail(f"missing file {path.name}")
    try:
        entry = load_dataset_pickle(path)
    except Exception as error:
        raise fail(
            f"{path.name} is not a readable dataset pickle ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(entry, dict):
        raise fail(f"{path.name} holds a {type(entry).__name__}, not a dict")
    # Python 3 re-pickles may carry bytes keys; the originals decode to text under latin1.
    entry = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise fail(f"{path.name} lacks key 'data' or {label_key!r} (has {sorted(map(str, entry))})")
    data, labels = entry["data"], entry[label_key]
    row = 3 * image_size * image_size
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        described = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise fail(f"{path.name}: 'data' is {described}, expected uint8 N x {row}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise fail(f"{path.name}: {label_key!r} is not a list of integers") from error
    if labels.shape != (data.shape[0],):
        raise fail(f"{path.name}: {labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images")
    # Rows are three row-major colour planes: a reshape gives CHW without moving any byte.
    return data.reshape(-1, 3, image_size, image_size), labels


def _check_label_range(dataset: str, path: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetUnavailable(
            dataset,
            path,
            f"labels outside 0..{num_classes - 1} (found {labels.min()}..{labels.max()})",
            get_dataset(dataset).layout,
        )


def _load_split(dataset: str, files: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    info = get_dataset(dataset)
    images, labels = [], []
    for path in files:
        data, batch_labels = read_pickled_batch(dataset, path, label_key, info.input_size)
        _check_label_range(dataset, path, batch_labels, info.num_classes)
        images.append(data)
        labels.append(batch_labels)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load_cifar10(data_dir: Path) -> RawSplits:
    root = require_available("cifar10", data_dir)
    train_x, train_y = _load_split("cifar10", [root / f"data_batch_{i}" for i in range(1, 6)], "labels")
    test_x, test_y = _load_split("cifar10", [root / "test_batch"], "labels")
    return RawSplits(train_x, train_y, test_x, test_y, source=str(root))


def load_cifar100(data_dir: Path) -> RawSplits:
    root = require_available("cifar100", data_dir)
    train_x, train_y = _load_split("cifar100", [root / "train"], "fine_labels")
    test_x, test_y = _load_split("cifar100", [root / "test"], "fine_labels")
    return RawSplits(train_x, train_y, test_x, test_y, source=str(root))
