"""A local stand-in for the worker's RunContext and datasets, for the zero-cost tests and bench."""

from __future__ import annotations

import json
from typing import Any

import torch

from worker.methods.base import EvalRequest


class LocalDataset:
    """A seeded in-memory image set; ``fixed_batch`` picks images by seed like the real loaders."""

    def __init__(self, name: str, num_classes: int = 10, input_size: int = 32, images: int = 512) -> None:
        self.name = name
        self.num_classes = num_classes
        self.input_size = input_size
        self.device = torch.device("cpu")
        self.info: dict[str, Any] = {"images": images}
        g = torch.Generator().manual_seed(1234)
        self._images = torch.randn(images, 3, input_size, input_size, generator=g)
        self._labels = torch.randint(0, num_classes, (images,), generator=g)
        self.fixed_batch_calls: list[tuple[int, int]] = []

    def fixed_batch(self, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.fixed_batch_calls.append((size, seed))
        g = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(self._images.shape[0], generator=g)[:size]
        return self._images[chosen], self._labels[chosen]

    def train_batches(self, *args: Any, **kwargs: Any):
        raise NotImplementedError

    def test_batches(self, *args: Any, **kwargs: Any):
        raise NotImplementedError


class LocalContext:
    """RunContext for tests: datasets cached per (name, data config), progress recorded."""

    def __init__(self, input_size: int = 32, num_classes: int = 10) -> None:
        self.device = torch.device("cpu")
        self.input_size = input_size
        self.num_classes = num_classes
        self.datasets: dict[str, LocalDataset] = {}
        self.dataset_calls: list[tuple[str, dict[str, Any]]] = []
        self.progress_calls: list[dict[str, Any]] = []

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> LocalDataset:
        self.dataset_calls.append((dataset, data_config))
        key = json.dumps([dataset, data_config], sort_keys=True)
        if key not in self.datasets:
            self.datasets[key] = LocalDataset(dataset, self.num_classes, self.input_size)
        return self.datasets[key]

    def progress(self, **fields: Any) -> None:
        self.progress_calls.append(fields)

    def stage1_budget_s(self) -> float | None:
        return None

    def report_stage1_time(self, seconds: float) -> None:
        pass


def requests_for(
    methods: list[str] | list[tuple[str, dict[str, Any]]],
    *,
    space: str = "nb201",
    genotype: str = "g",
    dataset: str = "cifar10",
    seed: int = 0,
) -> list[EvalRequest]:
    """One request per measure; a bare name gets that measure's default catalog config."""
    from app.catalog.zero_cost import CONFIGS

    out = []
    for i, item in enumerate(methods):
        name, overrides = (item, {}) if isinstance(item, str) else item
        config = CONFIGS[name].model_validate(overrides).model_dump(mode="json")
        out.append(EvalRequest(i + 1, name, space, genotype, dataset, seed, config))
    return out
