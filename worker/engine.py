"""The torch side of a task: pick the device, load datasets once per process, dispatch methods."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

import torch

from app.catalog.methods import all_methods
from app.settings import get_settings
from worker import stacking
from worker.methods.base import EvalRequest, LostOwnership, MethodResult
from worker.runtime import Claim, Heartbeat, ServiceContext, store_failure, store_results

log = logging.getLogger(__name__)


@lru_cache
def worker_device() -> torch.device:
    """CUDA if available (this process sees one GPU: pin it with CUDA_VISIBLE_DEVICES), else CPU."""
    wanted = get_settings().device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(wanted)
    if device.type == "cuda":
        # Needed before cuBLAS starts for deterministic matmuls (the ``deterministic`` option).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.set_device(device.index or 0)
        torch.backends.cudnn.benchmark = True
        fraction = slot_memory_fraction()
        if fraction is not None:
            # Several slots share the card: one slot's allocator must not starve the others.
            torch.cuda.set_per_process_memory_fraction(fraction, device.index or 0)
    threads = get_settings().torch_threads
    if threads:
        torch.set_num_threads(threads)
    return device


def slot_memory_fraction() -> float | None:
    """``slot_memory_fraction``, else 1/slots when the card runs several slots, else no cap."""
    configured = get_settings().slot_memory_fraction
    if configured is not None:
        return configured
    slots = int(os.environ.get("FASTARCHRANK_SLOTS") or 1)
    return 1.0 / slots if slots > 1 else None


def device_facts() -> dict[str, Any]:
    """This process's device, for the beacon: class, GPU name and memory, torch's CUDA version."""
    device = worker_device()
    facts: dict[str, Any] = {
        "device_class": "gpu" if device.type == "cuda" else "cpu",
        "cuda": torch.version.cuda,
        "label": device_label(device),
        "gpu": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device.index or 0)
        facts["gpu"] = {
            "name": props.name,
            "memory_bytes": int(props.total_memory),
            "index": device.index or 0,
        }
    return facts


def cap_device_class(device: torch.device) -> str:
    """The device class FEAR's ratio cap compares within: the GPU model, or "cpu"."""
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device.index or 0)}"
    return "cpu"


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        idx = device.index or 0
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        # evaluations.device holds 64 characters: a long GPU name must not fail the claim.
        return f"cuda:{idx} {torch.cuda.get_device_name(idx)} (CUDA_VISIBLE_DEVICES={visible})"[:64]
    return f"cpu ({torch.get_num_threads()} threads)"


def apply_reproducibility(device: torch.device, deterministic: bool) -> None:
    """``deterministic``: cuDNN benchmark off and deterministic algorithms (warning, not failing,
    for an op that has none); otherwise the fast autotuned kernels."""
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def wants_determinism(method: str, config: dict[str, Any]) -> bool:
    info = all_methods().get(method)
    if info is None:
        return False
    return bool(getattr(info.config_model.model_validate(config), "deterministic", False))


def load_data(dataset: str, data_config: dict[str, Any], progress: Any = None) -> Any:
    """Datasets are cached per process by ``worker.data.load_dataset``."""
    from worker.data import load_dataset, request_from_config

    settings = get_settings()
    request = request_from_config(dataset, data_config)
    return load_dataset(
        request, worker_device(), settings.effective_datasets_dir, progress, cache_dir=settings.cache_dir
    )


def run_claims(claims: list[Claim]) -> None:
    """Run claimed evaluations: training methods one by one, zero-cost measures together."""
    from worker.methods.registry import TRAINING, ZERO_COST

    device = worker_device()
    with Heartbeat(claims) as beat:
        training = [c for c in claims if c.method in TRAINING]
        zero_cost = [c for c in claims if c.method in ZERO_COST]
        unknown = [c for c in claims if c.method not in TRAINING and c.method not in ZERO_COST]
        for c in unknown:
            store_failure(c, ValueError(f"this worker does not implement method {c.method!r}"))
        for group in stacking.plan(training, get_settings().stack_size):
            _run_training_group(group, beat, device)
        apply_reproducibility(device, deterministic=False)
        by_arch: dict[tuple[str, str, str, int], list[Claim]] = {}
        for c in zero_cost:
            by_arch.setdefault((c.space, c.genotype, c.dataset, c.seed), []).append(c)
        # Measures that read no images (params, flops, synflow's all-ones input) of every
        # architecture are stored before any data is loaded: a first dataset generation must not
        # hold them back.
        for reads_data in (False, True):
            for group in by_arch.values():
                part = [c for c in group if _reads_data(c.method) == reads_data]
                if part:
                    _run_zero_cost_group(part, beat, device)


def _reads_data(method: str) -> bool:
    from app.catalog.zero_cost import MEASURE_SPECS

    return any(spec.name == method and spec.input == "batch" for spec in MEASURE_SPECS)


def _run_zero_cost_group(group: list[Claim], beat: Heartbeat, device: torch.device) -> None:
    from worker.methods.registry import run_zero_cost

    ctx = ServiceContext(group[0], beat, device, load_data, cap_device_class(device))
    try:
        results = run_zero_cost([EvalRequest.of(c) for c in group], ctx)
    except LostOwnership:
        return
    except Exception as exc:  # one broken architecture must not take down the worker
        log.exception("zero-cost measures failed for %s", [c.evaluation_id for c in group])
        for c in group:
            store_failure(c, exc)
        return
    # Stored per architecture: a later failure or time limit cannot take these results along.
    _finish_many(list(zip(group, results, strict=True)))


def _run_training_group(group: list[Claim], beat: Heartbeat, device: torch.device) -> None:
    """One evaluation alone, or a ``worker.stacking`` group as one stacked network."""

    def alone(c: Claim) -> None:
        ctx = ServiceContext(c, beat, device, load_data, cap_device_class(device))
        _run_one(c, lambda: _run_training(c, ctx, device))

    if len(group) == 1:
        alone(group[0])
        return
    apply_reproducibility(device, wants_determinism(group[0].method, group[0].config))
    contexts = [ServiceContext(c, beat, device, load_data, cap_device_class(device)) for c in group]
    stacking.run_stack(group, contexts, device, _finish, store_failure, alone)


def _run_training(c: Claim, ctx: ServiceContext, device: torch.device) -> MethodResult:
    from worker.methods.registry import TRAINING

    apply_reproducibility(device, wants_determinism(c.method, c.config))
    return TRAINING[c.method](EvalRequest.of(c), ctx)


def _run_one(c: Claim, fn: Any) -> None:
    try:
        result = fn()
    except LostOwnership:
        log.warning("evaluation %s: ownership lost, stopping", c.evaluation_id)
        return
    except Exception as exc:
        log.exception("evaluation %s (%s) failed", c.evaluation_id, c.method)
        store_failure(c, exc)
        return
    _finish(c, result)


def _finish(c: Claim, result: MethodResult) -> None:
    _finish_many([(c, result)])


def _finish_many(pairs: list[tuple[Claim, MethodResult]]) -> None:
    """Store results in one transaction (zero-cost groups are many tiny results)."""
    label = device_label(worker_device())
    ok: list[tuple[Claim, MethodResult]] = []
    for c, result in pairs:
        if result.status == "failed":
            store_failure(c, RuntimeError(result.reason or "the method failed"))
            continue
        result.info.setdefault("device", label)
        ok.append((c, result))
    if ok:
        store_results(ok)
