"""NAS-Bench-201's halves of a test split: keep only the x-valid or x-test images of a loaded dataset.

NB201 / NATS-Bench evaluate CIFAR-100 (test set) and ImageNet16-120 (validation set) on two fixed
halves listed in the benchmark's split files; their reported test accuracy is on x-test. The halves
index the test split in file order, which is the order the loaders here keep (ImageNet16-120 after
keeping classes 1..120), so an index names the same image in both.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import cast, get_args

import torch

from app.catalog.datasets import HeldOutSplit, read_split_file
from worker.data.raw import RawSplits


def select_test_half(raw: RawSplits, dataset: str, split: str, data_dir: Path) -> RawSplits:
    """``raw`` with its test split cut to the ``split`` half (indices in increasing order).

    Raises ``ValueError`` for a split name that is not a half or a dataset without an official split,
    ``DatasetUnavailable`` (naming the file) for a missing file or one whose lists are not disjoint,
    in range and covering this test split.
    """
    if split not in get_args(HeldOutSplit) or split == "all":
        raise ValueError(f"test_split {split!r} is not a half of the test split; use 'x-valid' or 'x-test'")
    total = int(raw.test_y.shape[0])
    halves = read_split_file(dataset, data_dir, test_total=total)
    chosen = torch.tensor(sorted(halves.half(cast(HeldOutSplit, split))), dtype=torch.int64)
    return replace(
        raw,
        test_x=raw.test_x.index_select(0, chosen),
        test_y=raw.test_y.index_select(0, chosen),
        info={
            **raw.info,
            "test_split": split,
            "test_split_file": str(halves.path),
            "test_split_of": total,
        },
    )
