"""Torch-free description of methods: config schema (pydantic, with limits), presets, direction.

The API resolves ``preset`` + per-batch ``config`` overrides into one validated effective config,
hashes it for identity/dedupe and stores it with every evaluation; the worker receives exactly that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Family = Literal["training", "zero_cost", "static"]
Schedule = Literal["per_iteration", "per_epoch"]
Precision = Literal["fp32", "bf16"]

# The mark of a config field added after results were stored (``json_schema_extra``): left at its
# default it is left out of the config hash, so evaluations stored before the field existed are
# still found and reused.
HASH_OMITS_DEFAULT: dict[str, Any] = {"hash_omits_default": True}


class StrictModel(BaseModel):
    """Unknown config keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", strict=True)


class NetworkOptions(StrictModel):
    """Network size knobs; None means the space's benchmark default (nb201 C=16 N=5; darts C=32 layers=8)."""

    C: int | None = Field(None, ge=1, le=256, description="initial channels")
    N: int | None = Field(None, ge=1, le=10, description="cells per stage (nb201)")
    layers: int | None = Field(None, ge=3, le=30, description="cells in total (darts/nb301)")
    auxiliary: bool = Field(False, description="auxiliary head (darts/nb301; 32x32 inputs only)")
    auxiliary_weight: float = Field(0.4, ge=0, le=10, description="auxiliary loss weight")
    drop_path: float = Field(0.0, ge=0, lt=1, description="drop-path probability (darts/nb301)")


class SyntheticOptions(StrictModel):
    """Sizes of the generated synthetic_cifar10 dataset (the FEAR authors': 6000/5000/1e6/42)."""

    per_class: int = Field(6000, ge=2, le=6000, description="images kept per class (train + test)")
    train_per_class: int = Field(5000, ge=1, le=6000, description="of which go to the train split")
    draw_budget: int = Field(1_000_000, ge=1000, le=5_000_000, description="max images drawn")
    seed: int = Field(42, ge=0, description="generator seed")

    @model_validator(mode="after")
    def _split_fits(self) -> SyntheticOptions:
        if self.train_per_class >= self.per_class:
            raise ValueError(
                f"train_per_class ({self.train_per_class}) must be below per_class ({self.per_class}) "
                "so every class keeps test images"
            )
        return self


class DataOptions(StrictModel):
    train_size: int | None = Field(None, ge=1, le=2_000_000, description="seeded train subset; None = all")
    test_size: int | None = Field(None, ge=1, le=2_000_000, description="seeded test subset; None = all")
    subset_seed: int = Field(0, ge=0, description="seed choosing the subsets")
    augment: bool = Field(True, description="the dataset's standard train augmentation (none for synthetic)")
    cutout: int = Field(0, ge=0, le=32, description="cutout side length in pixels; 0 = off")
    normalize: bool = Field(
        True,
        description=(
            "per-channel mean/std normalisation of the dataset; false = raw [0, 1] inputs (the FEAR "
            "authors' ImageNet16-120 provider)"
        ),
        json_schema_extra=HASH_OMITS_DEFAULT,
    )
    synthetic: SyntheticOptions = Field(default_factory=lambda: SyntheticOptions.model_validate({}))


@dataclass(frozen=True)
class SgdOptions:
    """One optimiser's settings, as the training loop takes them."""

    lr: float
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    grad_clip: float | None = 5.0  # max global L2 norm of the gradients; None = no clipping
    lr_min: float = 0.0  # cosine floor (eta_min)


@dataclass(frozen=True)
class StageOptions:
    """One training stage: its length (also its cosine horizon), batch size and optimiser."""

    epochs: int
    batch_size: int
    sgd: SgdOptions


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: Family
    summary: str  # one line: what the score is
    higher_is_better: bool
    config_model: type[StrictModel]
    # preset name -> function(space, dataset) -> dict of config values (may depend on both)
    presets: dict[str, Callable[[str, str], dict[str, Any]]] = field(default_factory=dict)
    default_preset: str | None = None
    spaces: tuple[str, ...] = ("nb201", "nats_sss", "darts", "nb301")
    # Optional cross-field check run after validation: (space, dataset, effective config) ->
    # None if fine, else (field path inside the config, message naming the fix).
    check: Callable[[str, str, dict[str, Any]], tuple[list[str | int], str] | None] | None = None
