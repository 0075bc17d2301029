"""Image-folder datasets (``train/<class>/*.png|jpg``, ``test/<class>/...``), decoded once and cached.

Decoding tens of thousands of small files costs seconds to minutes, so the decoded uint8 arrays are
stored under ``<data_dir>/cache/image_folder/`` keyed by a signature of the file listing (relative
paths, sizes, modification times): editing, adding or removing an image makes a new cache entry.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.catalog.datasets import DatasetUnavailable, get_dataset, require_available
from worker.data.disk_cache import load_or_build
from worker.data.raw import RawSplits

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(child.name for child in split_dir.iterdir() if child.is_dir())


def _list_split(split_dir: Path, class_index: dict[str, int]) -> tuple[list[str], list[int], list[str]]:
    """Image files of one split in class order, then name order, their labels, and one line per file
    (relative path, size, modification time) for the cache signature. Plain strings and one stat per
    file: building 60,000 ``Path`` objects alone would cost a second."""
    files: list[str] = []
    labels: list[int] = []
    records: list[str] = []
    for class_name, label in class_index.items():
        class_dir = split_dir / class_name
        if not class_dir.is_dir():
            continue
        with os.scandir(class_dir) as entries:
            found = sorted(
                (entry.name, entry.path, entry.stat())
                for entry in entries
                if entry.name[entry.name.rfind(".") :].lower() in IMAGE_SUFFIXES and entry.is_file()
            )
        for name, path, stat in found:
            records.append(f"{split_dir.name}/{class_name}/{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
            files.append(path)
        labels.extend([label] * len(found))
    return files, labels, records


def _decode_all(files: list[str], image_size: int, fail: Callable[[str], Exception]) -> np.ndarray:
    out = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)

    def decode(position: int) -> None:
        path = files[position]
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except Exception as error:
            raise fail(f"cannot decode {path} ({type(error).__name__}: {error})") from error
        if pixels.shape != out.shape[1:]:
            raise fail(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, expected {image_size}x{image_size}")
        out[position] = pixels

    # Pillow releases the GIL while decoding, so threads use every core without pickling arrays around.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for _ in pool.map(decode, range(len(files))):
            pass
    return out


def load_image_folder(dataset: str, data_dir: Path, cache_dir: Path | None = None) -> RawSplits:
    info = get_dataset(dataset)
    root = require_available(dataset, data_dir)

    def fail(problem: str) -> DatasetUnavailable:
        return DatasetUnavailable(dataset, root, problem, info.layout)

    classes = _class_folders(root / "train")
    if len(classes) != info.num_classes:
        raise fail(f"train/ has {len(classes)} class folders, expected {info.num_classes}")
    unknown = sorted(set(_class_folders(root / "test")) - set(classes))
    if unknown:
        raise fail(f"test/ has class folders absent from train/: {', '.join(unknown)}")
    class_index = {name: label for label, name in enumerate(classes)}
    train_files, train_labels, train_records = _list_split(root / "train", class_index)
    test_files, test_labels, test_records = _list_split(root / "test", class_index)
    listing = "".join([str(root.resolve()), "\n", *train_records, *test_records])
    signature = hashlib.sha256(listing.encode()).hexdigest()[:20]
    if not train_files or not test_files:
        raise fail("no .png/.jpg images in train/ or test/")

    def decode() -> dict[str, Any]:
        started = time.perf_counter()
        train = _decode_all(train_files, info.input_size, fail)
        test = _decode_all(test_files, info.input_size, fail)
        return {
            # Stored CHW like the pickled datasets so every loader hands the device the same layout.
            "train_x": torch.from_numpy(train).permute(0, 3, 1, 2).contiguous(),
            "train_y": torch.tensor(train_labels, dtype=torch.int64),
            "test_x": torch.from_numpy(test).permute(0, 3, 1, 2).contiguous(),
            "test_y": torch.tensor(test_labels, dtype=torch.int64),
            "classes": classes,
            "decode_seconds": time.perf_counter() - started,
        }

    cache = Path(cache_dir) if cache_dir is not None else Path(data_dir) / "cache"
    cache_file = cache / "image_folder" / f"{dataset}-{signature}.pt"
    payload, built = load_or_build(cache_file, decode)
    return RawSplits(
        payload["train_x"],
        payload["train_y"],
        payload["test_x"],
        payload["test_y"],
        source=str(root),
        info={
            "classes": payload["classes"],
            "cache_file": str(cache_file),
            "decoded_now": built,
            "decode_seconds": round(payload["decode_seconds"], 3),
        },
    )
