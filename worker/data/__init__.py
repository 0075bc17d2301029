"""Dataset loading for the worker: ``load_dataset`` turns a ``DataRequest`` into a device-resident dataset.

Loading (unpickling, decoding, generating, copying to the GPU) costs seconds, evaluations reuse the
same data many times, so each worker process keeps its last few datasets; the LRU bound keeps a
process from holding every dataset it ever saw.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import torch

from app.catalog.base import SyntheticOptions
from app.catalog.datasets import DatasetUnavailable, get_dataset
from worker.data.base import DataRequest, DeviceDataset
from worker.data.cifar import load_cifar10, load_cifar100
from worker.data.device_dataset import DeviceTensorDataset, build_device_dataset
from worker.data.image_folder import load_image_folder
from worker.data.imagenet16 import load_imagenet16_120
from worker.data.raw import RawSplits
from worker.data.synthetic import load_synthetic

__all__ = ["DataRequest", "DatasetUnavailable", "DeviceDataset", "clear_cache", "load_dataset"]

MAX_DEVICE_DATASETS = 2  # e.g. one training subset and the full set a zero-cost batch uses
MAX_RAW_DATASETS = 1  # the last files read, so several subsets of one dataset read the disk once

_FILE_LOADERS: dict[str, Callable[[Path], RawSplits]] = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagenet16_120": load_imagenet16_120,
    "cifar10_folder": lambda data_dir: load_image_folder("cifar10_folder", data_dir),
}

_lock = threading.Lock()
_device_cache: OrderedDict[Hashable, DeviceTensorDataset] = OrderedDict()
_raw_cache: OrderedDict[Hashable, RawSplits] = OrderedDict()


def _remember(cache: OrderedDict, key: Hashable, value: object, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def _load_raw(request: DataRequest, device: torch.device, data_dir: Path) -> RawSplits:
    if request.dataset == "synthetic_cifar10":
        options = SyntheticOptions(**request.synthetic)
        # Labelling on the GPU turns minutes of CPU matmuls into seconds; see synthetic.py for why its
        # output is cached under its own name.
        labelling_device = device if device.type == "cuda" else torch.device("cpu")
        key: Hashable = (
            "synthetic",
            str(data_dir),
            tuple(options.model_dump().items()),
            labelling_device.type,
        )
        loader: Callable[[], RawSplits] = lambda: load_synthetic(  # noqa: E731
            options.per_class,
            options.train_per_class,
            options.draw_budget,
            options.seed,
            data_dir / "cache" / "synthetic",
            labelling_device,
        )
    else:
        key = (request.dataset, str(data_dir))
        loader = lambda: _FILE_LOADERS[request.dataset](data_dir)  # noqa: E731
    if key in _raw_cache:
        _raw_cache.move_to_end(key)
        return _raw_cache[key]
    raw = loader()
    _remember(_raw_cache, key, raw, MAX_RAW_DATASETS)
    return raw


def _request_key(request: DataRequest, device: torch.device, data_dir: Path) -> Hashable:
    synthetic = (
        tuple(SyntheticOptions(**request.synthetic).model_dump().items())
        if request.dataset == "synthetic_cifar10"
        else None
    )
    return (
        request.dataset,
        request.train_size,
        request.test_size,
        request.subset_seed,
        synthetic,
        str(device),
        str(data_dir),
    )


def load_dataset(request: DataRequest, device: torch.device, data_dir: Path) -> DeviceDataset:
    """The requested dataset on ``device``; the same request on the same device returns the same object.

    Raises ``DatasetUnavailable`` for missing or malformed files, ``ValueError`` for an unknown dataset,
    invalid synthetic options or a subset larger than its split.
    """
    catalog = get_dataset(request.dataset)
    device = torch.device(device)
    data_dir = Path(data_dir).resolve()
    key = _request_key(request, device, data_dir)
    with _lock:
        if key in _device_cache:
            _device_cache.move_to_end(key)
            return _device_cache[key]
        raw = _load_raw(request, device, data_dir)
        dataset = build_device_dataset(raw, catalog, request, device)
        _remember(_device_cache, key, dataset, MAX_DEVICE_DATASETS)
        return dataset


def clear_cache() -> None:
    """Forget every dataset this process holds (tests; freeing memory between unrelated jobs)."""
    with _lock:
        _device_cache.clear()
        _raw_cache.clear()
