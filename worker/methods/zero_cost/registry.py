"""Name → measure: the torch-free spec (``app.catalog.zero_cost``) joined with its implementation.

Each implementation module marks its function with ``@implements("<name>")``; ``MEASURES`` imports
every module of this package once, so adding a measure needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from torch import nn

from app.catalog.zero_cost import MEASURE_SPEC, InputKind, MeasureSpec
from worker.methods.zero_cost.common import Batch, LossGradients, Score

Compute = Callable[[nn.Module, Batch], Score]
FromGradients = Callable[[LossGradients], Score]


@dataclass(frozen=True)
class Implementation:
    compute: Compute
    # Set for measures that only read the loss gradients of the fresh network (grad_norm, snip,
    # plain, fisher): the runner computes those once per batch and hands them to each.
    from_gradients: FromGradients | None = None


_IMPLEMENTATIONS: dict[str, Implementation] = {}


def implements(name: str, *, from_gradients: FromGradients | None = None) -> Callable[[Compute], Compute]:
    """Register the decorated function as the implementation of measure ``name``."""

    def register(compute: Compute) -> Compute:
        if name in _IMPLEMENTATIONS:
            raise RuntimeError(f"measure {name!r} is implemented twice")
        _IMPLEMENTATIONS[name] = Implementation(compute, from_gradients)
        return compute

    return register


@dataclass(frozen=True)
class Measure:
    spec: MeasureSpec
    implementation: Implementation

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input(self) -> InputKind:
        return self.spec.input

    @property
    def removes_batchnorm(self) -> bool:
        return self.spec.removes_batchnorm

    @property
    def compute(self) -> Compute:
        return self.implementation.compute

    @property
    def from_gradients(self) -> FromGradients | None:
        return self.implementation.from_gradients


@lru_cache
def implementations() -> dict[str, Implementation]:
    """Every registered implementation (importing each module of this package registers it)."""
    package = importlib.import_module(__package__ or "worker.methods.zero_cost")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(_IMPLEMENTATIONS)


@lru_cache
def measures() -> dict[str, Measure]:
    """The measures that have both a spec and an implementation (tests/test_specs.py: all of them)."""
    found = implementations()
    return {name: Measure(spec, found[name]) for name, spec in MEASURE_SPEC.items() if name in found}
