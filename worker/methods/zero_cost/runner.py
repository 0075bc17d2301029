"""Run the requested zero-cost measures of ONE architecture: build once, load each batch once,
give every measure its own fresh copy of the initial weights."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any, cast

import torch
from celery.exceptions import SoftTimeLimitExceeded
from torch import nn

from app.catalog.datasets import get_dataset
from app.catalog.zero_cost import ScoredNetworkOptions
from app.lifecycle import json_safe
from app.spaces import get_space_spec
from worker.data.base import DeviceDataset
from worker.methods.base import EvalRequest, LostOwnership, MethodResult, RunContext
from worker.methods.zero_cost.common import Batch, LossGradients, Score, loss_gradients
from worker.methods.zero_cost.registry import Measure, measures
from worker.methods.zero_cost.state import InitialState
from worker.spaces.base import NetworkSpec
from worker.training import make_generator, set_float32_numerics

Builder = Callable[[NetworkSpec], nn.Module]


def _default_builder() -> Builder:
    from worker.spaces import build

    return build


def _clock(device: torch.device) -> float:
    # CUDA kernels run asynchronously: wait for them so a stage's time is its own.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)


def network_options(space: str, config: dict[str, Any]) -> dict[str, Any]:
    """The builder's options from a config's ``network`` block (the space spec decides which apply;
    a knob set for a space that has no use for it is an error, never silently dropped)."""
    network = ScoredNetworkOptions.model_validate(config.get("network") or {})
    return get_space_spec(space).builder_options(network)


def batch_size_of(measure: Measure, config: dict[str, Any]) -> int | None:
    if measure.input != "batch":
        return None
    return int(config.get("batch_size") or measure.spec.default_batch_size)


def architecture_seed(seed: int, genotype: str) -> int:
    """A batch seed of its own for every architecture (stable across processes, unlike hash())."""
    digest = hashlib.sha256(f"{seed}:{genotype}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def first_train_batch(dataset: DeviceDataset, size: int, seed: int) -> Batch:
    """The first minibatch of a seeded, shuffled, augmented train epoch."""
    batches = dataset.train_batches(size, make_generator(seed), augment=True, cutout=0)
    return next(iter(batches))


class _Shared:
    """Datasets and fixed batches shared by all requests of one architecture (loaded lazily)."""

    def __init__(self, ctx: RunContext, requests: list[EvalRequest]) -> None:
        self.ctx = ctx
        self.dataset_name = requests[0].dataset
        self.seed = requests[0].seed
        # Static measures have no data config; any requested data variant has the same classes and
        # image size, so they borrow the first one instead of loading another variant.
        configs = [r.config["data"] for r in requests if "data" in r.config]
        self.fallback_data = configs[0] if configs else {}
        self._datasets: dict[str, DeviceDataset] = {}
        self._batches: dict[tuple[str, int, bool, bool], Batch] = {}
        self.dataset_s = 0.0
        self.batch_s: dict[tuple[str, int, bool, bool], float] = {}

    def data_config(self, request: EvalRequest) -> dict[str, Any]:
        return request.config.get("data", self.fallback_data)

    def dataset(self, request: EvalRequest) -> DeviceDataset:
        config = self.data_config(request)
        key = _key(config)
        if key not in self._datasets:
            start = _clock(self.ctx.device)
            self._datasets[key] = self.ctx.dataset(self.dataset_name, {**config, "fixed_batch_only": True})
            self.dataset_s += _clock(self.ctx.device) - start
        return self._datasets[key]

    def batch(self, request: EvalRequest, size: int) -> tuple[Batch, float]:
        """The batch of ``size`` images and the seconds it took to load (once per size and kind):
        by default the fixed, un-augmented batch of the seed; optionally (Samsung's convention) an
        augmented one and/or one drawn per architecture."""
        augment = bool(request.config.get("batch_augment"))
        per_architecture = bool(request.config.get("batch_per_architecture"))
        key = (_key(self.data_config(request)), size, augment, per_architecture)
        if key not in self._batches:
            dataset = self.dataset(request)
            seed = architecture_seed(self.seed, request.genotype) if per_architecture else self.seed
            start = _clock(self.ctx.device)
            if augment:
                self._batches[key] = first_train_batch(dataset, size, seed)
            else:
                self._batches[key] = dataset.fixed_batch(size, seed)
            self.batch_s[key] = _clock(self.ctx.device) - start
        return self._batches[key], self.batch_s[key]

    def shape_batch(self, request: EvalRequest) -> tuple[Batch, float]:
        # Only the image shape is read (synflow feeds an all-ones image): the catalogue knows it,
        # so no dataset is loaded or generated for it.
        side = get_dataset(self.dataset_name).input_size
        images = torch.zeros(1, 3, side, side, device=self.ctx.device)
        return (images, torch.zeros(1, dtype=torch.long, device=self.ctx.device)), 0.0


def _check_one_architecture(requests: list[EvalRequest]) -> None:
    first = requests[0]
    for request in requests:
        same = (request.space, request.genotype, request.dataset, request.seed)
        if same != (first.space, first.genotype, first.dataset, first.seed):
            raise ValueError(
                "run_zero_cost takes the requests of one architecture: space, genotype, dataset and seed "
                f"must agree (evaluation {request.evaluation_id} differs from {first.evaluation_id})"
            )
        if request.method not in measures():
            known = ", ".join(measures())
            raise ValueError(f"unknown zero-cost measure {request.method!r}; known: {known}")


def _result(
    score: Score,
    measure: Measure,
    request: EvalRequest,
    cost_s: float,
    timings: dict[str, float],
    batch_size: int | None,
    shared_gradients: bool,
) -> MethodResult:
    value = float(score.value)
    finite = math.isfinite(value)
    info: dict[str, Any] = {
        "raw": repr(value),
        "seed": request.seed,
        "batch_size": batch_size,
        "batchnorm_removed": measure.removes_batchnorm,
        **json_safe(score.info),
    }
    if measure.from_gradients is not None:
        info["gradients_reused"] = shared_gradients
    reason = score.reason if not finite else None
    if not finite and reason is None:
        reason = f"{measure.name} is not finite ({value!r})"
    return MethodResult(score=value, finite=finite, reason=reason, cost_s=cost_s, timings=timings, info=info)


class _Architecture:
    """One built network (one network config) and what its measures share."""

    def __init__(self, model: nn.Module, device: torch.device, seed: int) -> None:
        self.initial = InitialState(model)
        self.device = device
        self.seed = seed
        self._gradients: dict[int, tuple[LossGradients, float]] = {}

    def fresh(self) -> nn.Module:
        model = self.initial.restore()
        # Reseeding makes any randomness inside a measure independent of the measures before it.
        torch.manual_seed(self.seed)
        return model

    def loss_gradients(self, batch: Batch) -> tuple[LossGradients, float, bool]:
        """The gradient pass of the fresh network on ``batch`` (computed on first use), its time,
        and whether it was reused."""
        key = id(batch)  # batches stay cached (alive) for the whole run, so identity names them
        if key in self._gradients:
            return (*self._gradients[key], True)
        start = _clock(self.device)
        gradients = loss_gradients(self.fresh(), batch)
        elapsed = _clock(self.device) - start
        self._gradients[key] = (gradients, elapsed)
        return gradients, elapsed, False


def run_zero_cost(
    requests: list[EvalRequest], ctx: RunContext, *, builder: Builder | None = None
) -> list[MethodResult]:
    """Results in the order of ``requests``; all must describe the same architecture, dataset and
    seed (their configs may differ: one network per distinct network config, one batch per
    distinct data config and batch size). ``builder`` defaults to ``worker.spaces.build``.

    ``cost_s`` of a result is what that measure costs on its own: restoring the initial weights
    plus its computation (for grad_norm/snip/plain/fisher: the shared gradient pass plus its own
    reduction). The shared build and data loading are listed in ``timings`` but not in ``cost_s``."""
    if not requests:
        return []
    _check_one_architecture(requests)
    # Measures run in float32 with TF32 off, always: several are sums over many small terms.
    set_float32_numerics(ctx.device, "fp32")
    build = builder or _default_builder()
    shared = _Shared(ctx, requests)
    first = requests[0]
    results: list[MethodResult | None] = [None] * len(requests)

    groups: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(_key(network_options(first.space, request.config)), []).append(index)

    done = 0
    for indices in groups.values():
        options = network_options(first.space, requests[indices[0]].config)
        # Class count and image size come from the catalogue: params, flops and synflow never
        # need the data itself (a first synthetic generation can take minutes).
        facts = get_dataset(first.dataset)
        spec = NetworkSpec(first.space, first.genotype, facts.num_classes, facts.input_size, options)
        start = _clock(ctx.device)
        # Initialise on the CPU under the seed: the initial weights do not depend on the device.
        torch.manual_seed(first.seed)
        model = build(spec).to(ctx.device).train()
        arch = _Architecture(model, ctx.device, first.seed)
        build_s = _clock(ctx.device) - start

        for index in indices:
            request = requests[index]
            measure = measures()[request.method]
            ctx.progress(phase="zero_cost", measure=measure.name, done=done, total=len(requests))
            batch_size = batch_size_of(measure, request.config)
            batch: Batch | None = None
            batch_s = 0.0
            if batch_size is not None:
                batch, batch_s = shared.batch(request, batch_size)
            elif measure.input == "shape":
                batch, batch_s = shared.shape_batch(request)
            timings = {
                "shared_build_s": build_s,
                "shared_batch_s": batch_s,
                "shared_dataset_s": shared.dataset_s,
            }

            try:
                results[index] = _run_measure(arch, measure, request, batch, batch_size, timings, ctx.device)
            except (LostOwnership, SoftTimeLimitExceeded):
                raise
            except Exception as exc:  # one broken measure (e.g. out of memory) must not sink the others
                results[index] = MethodResult(
                    score=None, status="failed", finite=False, reason=f"{type(exc).__name__}: {exc}"[:2000]
                )
            done += 1
    return [r for r in results if r is not None]


def _run_measure(
    arch: _Architecture,
    measure: Measure,
    request: EvalRequest,
    batch: Batch | None,
    batch_size: int | None,
    timings: dict[str, float],
    device: torch.device,
) -> MethodResult:
    reused = False
    if measure.from_gradients is not None and batch is not None:
        gradients, gradients_s, reused = arch.loss_gradients(batch)
        start = _clock(device)
        score = measure.from_gradients(gradients)
        own_s = _clock(device) - start
        timings.update(gradients_s=gradients_s, measure_s=own_s)
        cost_s = gradients_s + own_s
    else:
        start = _clock(device)
        fresh = arch.fresh()
        restored = _clock(device)
        # Only params reads no data at all; its implementation ignores the batch argument.
        score = measure.compute(fresh, cast(Batch, batch))
        finished = _clock(device)
        timings.update(restore_s=restored - start, measure_s=finished - restored)
        cost_s = finished - start
    return _result(score, measure, request, cost_s, timings, batch_size, reused)
