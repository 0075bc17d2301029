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
from typing import Any

import torch

from app.catalog.base import SyntheticOptions
from app.catalog.datasets import DatasetInfo, DatasetUnavailable, get_dataset
from worker.data.base import DataRequest, DeviceDataset, GenerationProgress, ProgressCallback
from worker.data.cifar import load_cifar10, load_cifar100
from worker.data.device_dataset import DeviceTensorDataset, build_device_dataset
from worker.data.fixed_batch_dataset import FixedBatchDataset
from worker.data.image_folder import load_image_folder
from worker.data.imagenet16 import load_imagenet16_120
from worker.data.raw import RawSplits
from worker.data.synthetic import load_synthetic
from worker.data.test_half import select_test_half

__all__ = [
    "DataRequest",
    "DatasetUnavailable",
    "DeviceDataset",
    "GenerationProgress",
    "ProgressCallback",
    "clear_cache",
    "load_dataset",
    "request_from_config",
]

MAX_DEVICE_DATASETS = 2  # e.g. one training subset and the full set a zero-cost batch uses
MAX_RAW_DATASETS = 1  # the last files read, so several subsets of one dataset read the disk once

# (dataset files folder, cache folder) -> raw splits; only decoded image folders are cached.
_FILE_LOADERS: dict[str, Callable[[Path, Path], RawSplits]] = {
    "cifar10": lambda root, _cache: load_cifar10(root),
    "cifar100": lambda root, _cache: load_cifar100(root),
    "imagenet16_120": lambda root, _cache: load_imagenet16_120(root),
    "cifar10_folder": lambda root, cache: load_image_folder("cifar10_folder", root, cache),
}

_lock = threading.RLock()  # re-entered when a fixed-batch dataset loads its prefix
_device_cache: OrderedDict[Hashable, DeviceDataset] = OrderedDict()
_raw_cache: OrderedDict[Hashable, RawSplits] = OrderedDict()


def _remember(cache: OrderedDict, key: Hashable, value: object, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def request_from_config(dataset: str, data_config: dict[str, Any]) -> DataRequest:
    """The request a method's resolved ``data`` config makes (unknown keys such as augment/cutout are
    the method's business, not the loader's)."""
    return DataRequest(
        dataset=dataset,
        train_size=data_config.get("train_size"),
        test_size=data_config.get("test_size"),
        subset_seed=int(data_config.get("subset_seed", 0)),
        synthetic=dict(data_config.get("synthetic") or {}),
        fixed_batch_only=bool(data_config.get("fixed_batch_only", False)),
        test_split=str(data_config.get("test_split", "all")),
    )


def synthetic_compute_device(device: torch.device) -> torch.device:
    """Where the float32 scoring runs: the worker's GPU if it has one (seconds instead of minutes).
    The content does not depend on it (see synthetic.py)."""
    return device if device.type == "cuda" else torch.device("cpu")


def _load_synthetic_raw(
    options: SyntheticOptions,
    device: torch.device,
    cache_dir: Path,
    train_prefix: int | None,
    progress: ProgressCallback | None,
) -> RawSplits:
    # The key has no device in it: every device produces the same content.
    key: Hashable = ("synthetic", str(cache_dir), tuple(options.model_dump().items()), train_prefix)
    if key in _raw_cache:
        _raw_cache.move_to_end(key)
        return _raw_cache[key]
    raw = load_synthetic(
        options.per_class,
        options.train_per_class,
        options.draw_budget,
        options.seed,
        cache_dir / "synthetic",
        synthetic_compute_device(device),
        train_prefix=train_prefix,
        progress=progress,
    )
    if train_prefix is None:  # prefixes are small and kept by their FixedBatchDataset
        _remember(_raw_cache, key, raw, MAX_RAW_DATASETS)
    return raw


def _load_raw(
    request: DataRequest,
    device: torch.device,
    data_dir: Path,
    cache_dir: Path,
    progress: ProgressCallback | None,
) -> RawSplits:
    if request.dataset == "synthetic_cifar10":
        return _load_synthetic_raw(SyntheticOptions(**request.synthetic), device, cache_dir, None, progress)
    key: Hashable = (request.dataset, str(data_dir))
    if key in _raw_cache:
        _raw_cache.move_to_end(key)
        return _raw_cache[key]
    raw = _FILE_LOADERS[request.dataset](data_dir, cache_dir)
    _remember(_raw_cache, key, raw, MAX_RAW_DATASETS)
    return raw


def _request_key(request: DataRequest, device: torch.device, data_dir: Path, cache_dir: Path) -> Hashable:
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
        _reads_prefix_only(request),
        request.test_split,
        str(device),
        str(data_dir),
        str(cache_dir),
    )


def _reads_prefix_only(request: DataRequest) -> bool:
    # A train subset is spread over the whole split, so it needs the full set even for one batch.
    return request.fixed_batch_only and request.dataset == "synthetic_cifar10" and request.train_size is None


def _fixed_batch_dataset(
    request: DataRequest,
    catalog: DatasetInfo,
    device: torch.device,
    cache_dir: Path,
    progress: ProgressCallback | None,
) -> FixedBatchDataset:
    options = SyntheticOptions(**request.synthetic)

    def load_prefix(size: int, progress: ProgressCallback | None) -> DeviceTensorDataset:
        with _lock:
            raw = _load_synthetic_raw(options, device, cache_dir, size, progress)
        return build_device_dataset(raw, catalog, request, device)

    info = {"name": catalog.name, "synthetic": options.model_dump(), "reads": "train prefix per fixed batch"}
    return FixedBatchDataset(
        catalog.name, catalog.num_classes, catalog.input_size, device, load_prefix, info, progress
    )


def load_dataset(
    request: DataRequest,
    device: torch.device,
    data_dir: Path,
    progress: ProgressCallback | None = None,
    cache_dir: Path | None = None,
) -> DeviceDataset:
    """The requested dataset on ``device``; the same request on the same device returns the same object.

    ``data_dir`` holds the dataset files and may be read-only (a shared mount); generated and
    decoded data is cached under ``cache_dir`` (default ``data_dir/cache``; the service passes
    ``<settings.data_dir>/cache``).

    ``progress`` hears how a synthetic generation advances (a few calls a second at most). Raises
    ``DatasetUnavailable`` for missing or malformed files, ``ValueError`` for an unknown dataset,
    invalid synthetic options or a subset larger than its split.
    """
    catalog = get_dataset(request.dataset)
    device = torch.device(device)
    data_dir = Path(data_dir).resolve()
    cache_dir = Path(cache_dir).resolve() if cache_dir is not None else data_dir / "cache"
    key = _request_key(request, device, data_dir, cache_dir)
    with _lock:
        if key in _device_cache:
            _device_cache.move_to_end(key)
            cached = _device_cache[key]
            if isinstance(cached, FixedBatchDataset):
                cached.progress = progress
            return cached
        dataset: DeviceDataset
        if _reads_prefix_only(request):
            dataset = _fixed_batch_dataset(request, catalog, device, cache_dir, progress)
        else:
            raw = _load_raw(request, device, data_dir, cache_dir, progress)
            if request.test_split != "all":
                raw = select_test_half(raw, request.dataset, request.test_split, data_dir)
            dataset = build_device_dataset(raw, catalog, request, device)
        _remember(_device_cache, key, dataset, MAX_DEVICE_DATASETS)
        return dataset


def clear_cache() -> None:
    """Forget every dataset this process holds (tests; freeing memory between unrelated jobs)."""
    with _lock:
        _device_cache.clear()
        _raw_cache.clear()
