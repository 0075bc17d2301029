"""Torch-free configs, presets and descriptions of the training-free measures.

Every measure scores the freshly initialised network (seeded by the evaluation's seed) on a fixed,
seeded training minibatch, so all architectures of a comparison see the same images. The static
measures (params, flops) read no data. Presets:
- ``default``: the space's benchmark network and the whole dataset (batch 64, naswot 128).
- ``cpu`` / ``tiny``: the network size and data subset of the training methods' presets of the same
  name, so a zero-cost score describes exactly the network FEAR trains in that comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from app.catalog.base import HASH_OMITS_DEFAULT, DataOptions, Family, MethodInfo, NetworkOptions, StrictModel
from app.catalog.training import check_network, fear_cpu, fear_tiny

MIN_BATCH, MAX_BATCH = 2, 1024


class ScoredNetworkOptions(NetworkOptions):
    """The network as scored: no auxiliary head (it would change the initial weights and is not
    part of the architecture) and no drop path (it would make a train-mode score random)."""

    @model_validator(mode="after")
    def _deterministic_network(self) -> ScoredNetworkOptions:
        if self.auxiliary:
            raise ValueError(
                "zero-cost measures score the network without its auxiliary head; set auxiliary false"
            )
        if self.drop_path:
            raise ValueError("drop path makes a zero-cost score random; set drop_path 0")
        return self


def _batch_size(default: int) -> Any:
    return Field(
        default,
        ge=MIN_BATCH,
        le=MAX_BATCH,
        description=f"images in the one fixed, seeded minibatch ({MIN_BATCH}..{MAX_BATCH}); never split",
    )


def _data() -> Any:
    return Field(
        default_factory=lambda: DataOptions.model_validate({}),
        description="which dataset variant the batch is drawn from (subset, synthetic sizes); "
        "augment and cutout do not apply: the fixed batch is never augmented",
    )


def _network() -> Any:
    return Field(
        default_factory=lambda: ScoredNetworkOptions.model_validate({}),
        description="network size; null = benchmark default",
    )


class _StaticConfig(StrictModel):
    network: ScoredNetworkOptions = _network()


class _ShapeConfig(_StaticConfig):
    data: DataOptions = _data()


class _BatchConfig(_ShapeConfig):
    batch_size: int = _batch_size(64)
    batch_augment: bool = Field(
        False,
        description=(
            "draw the batch with the dataset's train augmentation (Samsung's reference code); "
            "false = one fixed un-augmented batch"
        ),
        json_schema_extra=HASH_OMITS_DEFAULT,
    )
    batch_per_architecture: bool = Field(
        False,
        description=(
            "a different random batch per architecture (seeded by seed and genotype; Samsung's code); "
            "false = the same batch for every architecture of the comparison"
        ),
        json_schema_extra=HASH_OMITS_DEFAULT,
    )


class GradNormConfig(_BatchConfig):
    """grad_norm: Σ over Conv/Linear layers of ||dL/dW||_F."""


class SnipConfig(_BatchConfig):
    """snip: Σ |W ⊙ dL/dW|."""


class GraspConfig(_BatchConfig):
    """grasp: Σ -W ⊙ (H g), g = dL/dW."""


class FisherConfig(_BatchConfig):
    """fisher: per output channel 0.5·mean_n(Σ_spatial a ⊙ dL/da)², weighted by fan-in."""


class PlainConfig(_BatchConfig):
    """plain: Σ W ⊙ dL/dW (signed)."""


class JacobCovConfig(_BatchConfig):
    """jacob_cov: eigenvalue score of the correlation of the per-image input Jacobians."""


class NaswotConfig(_BatchConfig):
    """naswot: log|det K| of the ReLU activation-code agreement kernel."""

    batch_size: int = _batch_size(128)


class SynflowConfig(_ShapeConfig):
    """synflow: synaptic flow of the linearised network without BatchNorm, float64, one all-ones image."""


class SynflowBnConfig(_ShapeConfig):
    """synflow_bn: synflow with BatchNorm kept (train mode)."""


class ParamsConfig(_StaticConfig):
    """params: number of parameters."""


class FlopsConfig(_StaticConfig):
    """flops: multiply-adds of conv and linear layers for one image."""


Preset = Callable[[str, str], dict[str, Any]]
# "batch": a real minibatch of ``batch_size`` images; "shape": only the image shape is read (synflow
# feeds one all-ones image, flops one image); "none": no data at all.
InputKind = Literal["batch", "shape", "none"]


@dataclass(frozen=True)
class MeasureSpec:
    """Everything about a measure except its arithmetic (that is ``worker/methods/zero_cost/<name>.py``)."""

    name: str
    summary: str
    input: InputKind
    needs_labels: bool = False
    removes_batchnorm: bool = False  # scores a copy of the network with BatchNorm replaced by identity
    default_batch_size: int = 64  # images in the fixed batch (input "batch" only)
    config_model: type[StrictModel] | None = None  # None = the standard config of its input kind

    @property
    def family(self) -> Family:
        return "static" if self.input == "none" or self.name == "flops" else "zero_cost"

    def config(self) -> type[StrictModel]:
        if self.config_model is not None:
            return self.config_model
        if self.input == "batch":
            return _batch_config(self.name, self.default_batch_size)
        return _ShapeConfig if self.input == "shape" else _StaticConfig


@lru_cache
def _batch_config(name: str, batch_size: int) -> type[StrictModel]:
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{name.title().replace('_', '')}Config",
        __base__=_BatchConfig,
        batch_size=(int, _batch_size(batch_size)),
    )


def _preset(spec: MeasureSpec, like: Preset | None) -> Preset:
    """A preset with the measure's default batch, and the network/data of a training preset."""
    model = spec.config()

    def preset(space: str, dataset: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "batch_size" in model.model_fields:
            values["batch_size"] = spec.default_batch_size
        if like is not None:
            training = like(space, dataset)
            values["network"] = dict(training.get("network", {}))
            if "data" in model.model_fields:
                values["data"] = dict(training.get("data", {}))
        return values

    return preset


def _check(space: str, dataset: str, config: dict[str, Any]) -> tuple[list[str | int], str] | None:
    return check_network(space, dataset, config.get("network") or {})


# The one list of measures. Adding one: an entry here and its implementation file in
# worker/methods/zero_cost/ (docs/zero_cost.md walks through an example).
MEASURE_SPECS: tuple[MeasureSpec, ...] = (
    MeasureSpec(
        "grad_norm",
        "sum over Conv/Linear layers of the norm of the loss gradient, at initialisation",
        "batch",
        needs_labels=True,
        config_model=GradNormConfig,
    ),
    MeasureSpec(
        "snip",
        "sum of |weight x loss gradient| (connection sensitivity), at initialisation",
        "batch",
        needs_labels=True,
        config_model=SnipConfig,
    ),
    MeasureSpec(
        "grasp",
        "sum of -weight x (Hessian x gradient) (gradient-signal preservation), at initialisation",
        "batch",
        needs_labels=True,
        config_model=GraspConfig,
    ),
    MeasureSpec(
        "fisher",
        "channel-wise Fisher information of the activations, fan-in weighted, at initialisation",
        "batch",
        needs_labels=True,
        config_model=FisherConfig,
    ),
    MeasureSpec(
        "plain",
        "signed sum of weight x loss gradient (correlates negatively on NB201; reported as is)",
        "batch",
        needs_labels=True,
        config_model=PlainConfig,
    ),
    MeasureSpec(
        "jacob_cov",
        "spread of the correlation spectrum of per-image input Jacobians, at initialisation",
        "batch",
        config_model=JacobCovConfig,
    ),
    MeasureSpec(
        "naswot",
        "log-determinant of the ReLU activation-pattern agreement kernel over one batch",
        "batch",
        default_batch_size=128,
        config_model=NaswotConfig,
    ),
    MeasureSpec(
        "synflow",
        "synaptic flow of the sign-free network on an all-ones image (float64, BatchNorm removed)",
        "shape",
        removes_batchnorm=True,
        config_model=SynflowConfig,
    ),
    MeasureSpec(
        "synflow_bn",
        "synaptic flow of the sign-free network on an all-ones image (float64, BatchNorm kept)",
        "shape",
        config_model=SynflowBnConfig,
    ),
    MeasureSpec("params", "number of parameters of the network", "none", config_model=ParamsConfig),
    MeasureSpec(
        "flops",
        "multiply-adds of the conv and linear layers for one image",
        "shape",
        config_model=FlopsConfig,
    ),
)
MEASURE_SPEC: dict[str, MeasureSpec] = {spec.name: spec for spec in MEASURE_SPECS}


def _info(spec: MeasureSpec) -> MethodInfo:
    return MethodInfo(
        name=spec.name,
        family=spec.family,
        summary=spec.summary,
        # Every score ranks "higher first" by its own convention, plain included: its negative
        # correlation is a finding the report shows, not a reason to flip the sign silently.
        higher_is_better=True,
        config_model=spec.config(),
        presets={
            "default": _preset(spec, None),
            "cpu": _preset(spec, fear_cpu),
            "tiny": _preset(spec, fear_tiny),
        },
        default_preset="default",
        check=_check,
    )


MEASURES: dict[str, MethodInfo] = {spec.name: _info(spec) for spec in MEASURE_SPECS}

# The config model of every measure by name (for callers that build configs directly).
CONFIGS: dict[str, type[StrictModel]] = {spec.name: spec.config() for spec in MEASURE_SPECS}
