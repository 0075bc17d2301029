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
from typing import Any

from pydantic import Field, model_validator

from app.catalog.base import DataOptions, MethodInfo, NetworkOptions, StrictModel
from app.catalog.training import check_network, fear_cpu, fear_tiny

DEFAULT_BATCH_SIZE: dict[str, int] = {
    "grad_norm": 64,
    "snip": 64,
    "grasp": 64,
    "fisher": 64,
    "plain": 64,
    "jacob_cov": 64,
    "naswot": 128,
}
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
        default_factory=DataOptions,
        description="which dataset variant the batch is drawn from (subset, synthetic sizes); "
        "augment and cutout do not apply: the fixed batch is never augmented",
    )


def _network() -> Any:
    return Field(default_factory=ScoredNetworkOptions, description="network size; null = benchmark default")


class _StaticConfig(StrictModel):
    network: ScoredNetworkOptions = _network()


class _ShapeConfig(_StaticConfig):
    data: DataOptions = _data()


class _BatchConfig(_ShapeConfig):
    batch_size: int = _batch_size(64)


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

    batch_size: int = _batch_size(DEFAULT_BATCH_SIZE["naswot"])


class SynflowConfig(_ShapeConfig):
    """synflow: synaptic flow of the linearised network without BatchNorm, float64, one all-ones image."""


class SynflowBnConfig(_ShapeConfig):
    """synflow_bn: synflow with BatchNorm kept (train mode)."""


class ParamsConfig(_StaticConfig):
    """params: number of parameters."""


class FlopsConfig(_StaticConfig):
    """flops: multiply-adds of conv and linear layers for one image."""


Preset = Callable[[str, str], dict[str, Any]]


def _preset(name: str, like: Callable[[str, str], dict[str, Any]] | None) -> Preset:
    """A preset with the measure's default batch, and the network/data of a training preset."""
    model = CONFIGS[name]

    def preset(space: str, dataset: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "batch_size" in model.model_fields:
            values["batch_size"] = DEFAULT_BATCH_SIZE[name]
        if like is not None:
            training = like(space, dataset)
            values["network"] = dict(training.get("network", {}))
            if "data" in model.model_fields:
                values["data"] = dict(training.get("data", {}))
        return values

    return preset


def _check(space: str, dataset: str, config: dict[str, Any]) -> tuple[list[str | int], str] | None:
    return check_network(space, dataset, config.get("network") or {})


CONFIGS: dict[str, type[StrictModel]] = {
    "grad_norm": GradNormConfig,
    "snip": SnipConfig,
    "grasp": GraspConfig,
    "fisher": FisherConfig,
    "plain": PlainConfig,
    "jacob_cov": JacobCovConfig,
    "naswot": NaswotConfig,
    "synflow": SynflowConfig,
    "synflow_bn": SynflowBnConfig,
    "params": ParamsConfig,
    "flops": FlopsConfig,
}

_SUMMARIES: dict[str, str] = {
    "grad_norm": "sum over Conv/Linear layers of the norm of the loss gradient, at initialisation",
    "snip": "sum of |weight x loss gradient| (connection sensitivity), at initialisation",
    "grasp": "sum of -weight x (Hessian x gradient) (gradient-signal preservation), at initialisation",
    "fisher": "channel-wise Fisher information of the activations, fan-in weighted, at initialisation",
    "plain": "signed sum of weight x loss gradient (correlates negatively on NB201; reported as is)",
    "jacob_cov": "spread of the correlation spectrum of per-image input Jacobians, at initialisation",
    "naswot": "log-determinant of the ReLU activation-pattern agreement kernel over one batch",
    "synflow": "synaptic flow of the sign-free network on an all-ones image (float64, BatchNorm removed)",
    "synflow_bn": "synaptic flow of the sign-free network on an all-ones image (float64, BatchNorm kept)",
    "params": "number of parameters of the network",
    "flops": "multiply-adds of the conv and linear layers for one image",
}


def _info(name: str) -> MethodInfo:
    return MethodInfo(
        name=name,
        family="static" if name in ("params", "flops") else "zero_cost",
        summary=_SUMMARIES[name],
        # Every score ranks "higher first" by its own convention, plain included: its negative
        # correlation is a finding the report shows, not a reason to flip the sign silently.
        higher_is_better=True,
        config_model=CONFIGS[name],
        presets={
            "default": _preset(name, None),
            "cpu": _preset(name, fear_cpu),
            "tiny": _preset(name, fear_tiny),
        },
        default_preset="default",
        check=_check,
    )


MEASURES: dict[str, MethodInfo] = {name: _info(name) for name in CONFIGS}
