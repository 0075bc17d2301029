"""The prepared device check: one script, about 5 minutes on one GPU, results kept section by section.

    python -m bench.gpu_check --out /tmp/gpu_check --cifar-tar ../shared/data/cifar10-jpg.tar.gz
    python -m bench.gpu_check --out /tmp/gpu_smoke --smoke     # CPU, tiny sizes: the script itself runs

After EACH section ``gpu_check.json`` and ``gpu_check.md`` are rewritten in ``--out``, so a crash (or a
killed run) keeps what ran; a section that raises is recorded with its error and the next one runs.
A section that would start after ``--budget-s`` is recorded as skipped. Sections:

1. environment: torch/CUDA/cuDNN versions, device name and memory, MPS availability.
2. training_parity: the project's NB201 builder, one seed, the same batches on CPU and on the device,
   plain fp32 SGD steps (TF32 off, cuDNN deterministic, deterministic algorithms): per-step losses,
   first-step difference must be below 1e-4.
3. same_seed_twice: ``worker.training.train`` (the service's loop, bf16 on CUDA) twice, one seed.
4. zero_cost_parity: every zero-cost measure through the service's runner, CPU vs device.
5. throughput: the largest NB201 network (all 3x3 convs, C=16 N=5) at batch 256 and 1024, fp32 and
   bf16, eager vs a CUDA-graph-captured training step (static buffers); wall and CUDA-event time.
5b. loop_cuda_graph: the service's loop with ``cuda_graph`` off and on (images/s, weight difference).
6. fear_paper_cifar10: FEAR ``paper`` preset on real CIFAR-10 (the jpg tarball, extracted to a temp
   dir) for the smallest, median and largest of three NB201 architectures; warm-up timed apart.
7. processes: K = 1, 2, 4, 8 spawned processes each training one architecture; evaluations/hour and
   peak memory per process.
8. stacked: K = 1, 2, 4, 8 architectures as one stacked network (grouped convolutions, and the exact
   mode), evaluations/hour against ``processes``; the grouped stack's first fp32 losses against each
   network alone on the device.
9. service_stack: the worker's stacked FEAR path (``worker.stacking.run_stack``, grouped on CUDA) on
   4 architectures against ``fear.run`` on each alone: wall time and the outcomes side by side.
10. compile: ``torch.compile`` of the training step at batch 256 (compile time, then images/s); last,
   because it is the most expensive.
Not covered: the real service path (a worker child on CUDA).
"""

from __future__ import annotations

import os

# cuBLAS reads this when CUDA initialises: it must be set before anything touches the GPU.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse
import contextlib
import functools
import json
import math
import multiprocessing as mp
import shutil
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.context import OfflineRunMixin
from worker.data.device_dataset import DeviceTensorDataset
from worker.spaces import build
from worker.spaces.base import NetworkSpec

LARGEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MEDIAN = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
SMALLEST = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"
FIRST_STEP_TOLERANCE = 1e-4  # fp32, TF32 off: CPU and CUDA differ by summation order only


@dataclass
class Sizes:
    """Everything that the smoke mode shrinks."""

    network: dict[str, int]
    parity_images: int
    parity_steps: int
    throughput_batches: tuple[int, ...]
    throughput_steps: int
    fear_override: dict[str, Any]
    fear_stage1_budget_s: float
    process_counts: tuple[int, ...]
    process_steps: int
    compile_steps: int


FULL = Sizes({"C": 16, "N": 5}, 512, 3, (256, 1024), 30, {}, 60.0, (1, 2, 4, 8), 200, 30)
SMOKE = Sizes(
    {"C": 2, "N": 1},
    16,
    2,
    (8,),
    2,
    {
        "threshold": 0.05,
        "max_stage1_epochs": 1,
        "stage2_epochs": 1,
        "stage1_batch_size": 16,
        "stage2_batch_size": 16,
        "network": {"C": 2, "N": 1},
    },
    30.0,
    (1, 2),
    2,
    2,
)
SMOKE_ZERO_COST_BATCH = 8


@dataclass
class Report:
    """Written in full after every section."""

    out: Path
    started: float = field(default_factory=time.perf_counter)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, name: str, result: dict[str, Any]) -> None:
        self.sections[name] = result
        self.out.mkdir(parents=True, exist_ok=True)
        payload = {"elapsed_s": round(time.perf_counter() - self.started, 1), "sections": self.sections}
        (self.out / "gpu_check.json").write_text(json.dumps(payload, indent=2, default=str))
        (self.out / "gpu_check.md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = ["# Device check (`python -m bench.gpu_check`)", ""]
        for name, result in self.sections.items():
            lines += [f"## {name}", "", "```json", json.dumps(result, indent=2, default=str), "```", ""]
        return "\n".join(lines)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def deterministic_fp32() -> Iterator[None]:
    """TF32 off, cuDNN deterministic and not autotuning, deterministic algorithms; restored after."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
            enabled,
        ) = saved
        torch.use_deterministic_algorithms(enabled)


def network(genotype: str, options: dict[str, int], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # initialised on the CPU: the same weights for every device
    return build(NetworkSpec("nb201", genotype, 10, 32, dict(options)))


def learnable_data(device: torch.device, train_size: int, test_size: int) -> DeviceTensorDataset:
    """Class templates plus noise (float32, used as is): learnable within a few epochs."""
    gen = torch.Generator().manual_seed(0)
    templates = torch.randn(10, 3, 32, 32, generator=gen)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(10, (n,), generator=gen)
        return templates[y] + 1.5 * torch.randn(n, 3, 32, 32, generator=gen), y

    train_x, train_y = split(train_size)
    test_x, test_y = split(test_size)
    return DeviceTensorDataset("learnable", 10, train_x, train_y, test_x, test_y, device, flip=True)


def environment(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
        "mps_control_found": shutil.which("nvidia-cuda-mps-control") is not None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            name=props.name, memory_gib=round(props.total_memory / 2**30, 1), sm=props.multi_processor_count
        )
    return facts


def _fp32_losses(device: torch.device, sizes: Sizes) -> list[float]:
    data = learnable_data(device, sizes.parity_images, 16)
    model = network(LARGEST, sizes.network).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    losses = []
    batches = data.train_batches(sizes.parity_images // sizes.parity_steps, torch.Generator().manual_seed(0))
    for _, (x, y) in zip(range(sizes.parity_steps), batches, strict=False):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def training_parity(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    with deterministic_fp32():
        cpu = _fp32_losses(torch.device("cpu"), sizes)
        other = _fp32_losses(device, sizes)
    diffs = [abs(a - b) for a, b in zip(cpu, other, strict=True)]
    return {
        "cpu_losses": cpu,
        "device_losses": other,
        "abs_diff_per_step": diffs,
        "tolerance_first_step": FIRST_STEP_TOLERANCE,
        "ok": diffs[0] <= FIRST_STEP_TOLERANCE,
    }


def same_seed_twice(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    from worker.training import SgdConfig, TrainOptions, make_generator, prepare_model, train

    runs = []
    for _ in range(2):
        model = prepare_model(network(MEDIAN, sizes.network), device)
        data = learnable_data(device, sizes.parity_images, 16)
        result = train(
            model,
            data,
            TrainOptions(epochs=1, batch_size=32, sgd=SgdConfig(lr=0.1), precision="fp32"),
            make_generator(0),
        )
        runs.append([result.epochs[0].train_loss, result.epochs[0].train_acc])
    return {"runs": runs, "identical": runs[0] == runs[1], "abs_diff_loss": abs(runs[0][0] - runs[1][0])}


def loop_cuda_graph(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """The service's loop (``worker.training.train``) with ``cuda_graph`` off and on: one epoch of the
    largest network at batch 256 (bf16 on CUDA), images/s of each, and how far the weights end apart
    (fused SGD against the default optimiser; on a CPU the two are bitwise equal)."""
    import dataclasses

    from worker.training import SgdConfig, TrainOptions, make_generator, prepare_model, train

    batch = 256 if device.type == "cuda" else 16
    images = batch * max(sizes.throughput_steps, 4)
    data = learnable_data(device, images, 16)
    options = TrainOptions(
        epochs=1, batch_size=batch, sgd=SgdConfig(lr=0.05, grad_clip=5.0), precision="bf16", train_size=images
    )
    out: dict[str, Any] = {"network": f"nb201 {LARGEST} {sizes.network}", "batch": batch, "images": images}
    models = {}
    for graph in (False, True):
        model = prepare_model(network(LARGEST, sizes.network), device, "bf16")
        run = dataclasses.replace(options, cuda_graph=graph)
        train(model, data, run, make_generator(1))  # warm-up epoch: autotuning, capture
        sync(device)
        start = time.perf_counter()
        result = train(model, data, run, make_generator(0))
        wall = time.perf_counter() - start
        out["graph" if graph else "eager"] = {
            "wall_s": wall,
            "images_per_s": images / wall,
            "gpu_s": result.gpu_seconds,
            "train_acc": result.epochs[0].train_acc,
        }
        models[graph] = model
    weights = zip(models[False].state_dict().values(), models[True].state_dict().values(), strict=True)
    out["max_abs_weight_diff"] = max(
        float((a.float() - b.float()).abs().max()) for a, b in weights if a.is_floating_point()
    )
    out["graph_vs_eager"] = out["graph"]["images_per_s"] / out["eager"]["images_per_s"]
    return out


class FixedContext(OfflineRunMixin):
    def __init__(
        self, data: DeviceTensorDataset, device: torch.device, budget_s: float | None = None
    ) -> None:
        self.data = data
        self.device = device
        self.budget_s = budget_s

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> Any:
        return self.data

    def stage1_budget_s(self) -> float | None:
        return self.budget_s

    def has_cap(self) -> bool:
        return self.budget_s is not None


def zero_cost_parity(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    from app.catalog.zero_cost import CONFIGS
    from worker.methods.base import EvalRequest
    from worker.methods.zero_cost.runner import run_zero_cost

    def scores(where: torch.device) -> dict[str, float | None]:
        ctx = FixedContext(learnable_data(where, 256 if sizes is FULL else 16, 16), where)
        requests = []
        for i, (name, model) in enumerate(CONFIGS.items()):
            values: dict[str, Any] = {"network": sizes.network}
            if sizes is SMOKE and "batch_size" in model.model_fields:
                values["batch_size"] = SMOKE_ZERO_COST_BATCH
            config = model.model_validate(values).model_dump(mode="json")
            requests.append(EvalRequest(i, name, "nb201", MEDIAN, "cifar10", 0, config))
        return {r.method: res.score for r, res in zip(requests, run_zero_cost(requests, ctx), strict=True)}

    with deterministic_fp32():
        cpu, other = scores(torch.device("cpu")), scores(device)
    rel: dict[str, float | None] = {}
    for name, a in cpu.items():
        b = other[name]
        rel[name] = None if a is None or b is None else abs(a - b) / max(abs(a), 1e-12)
    finite = [v for v in rel.values() if v is not None and math.isfinite(v)]
    return {"cpu": cpu, "device": other, "relative_diff": rel, "max_relative_diff": max(finite, default=None)}


def _step_fn(
    model: nn.Module, optimizer: torch.optim.Optimizer, bf16: bool
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=False)  # graphs need the gradient buffers to stay put
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _time_steps(device: torch.device, run: Callable[[], Any], steps: int, batch: int) -> dict[str, float]:
    sync(device)
    events = None
    if device.type == "cuda":
        events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        events[0].record()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    if events is not None:
        events[1].record()
    sync(device)
    wall = time.perf_counter() - start
    out = {"wall_s": wall, "images_per_s_wall": steps * batch / wall}
    if events is not None:
        gpu = events[0].elapsed_time(events[1]) / 1000
        out.update(gpu_s=gpu, images_per_s_gpu=steps * batch / gpu)
    return out


def _setup(
    device: torch.device, sizes: Sizes, batch: int
) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    model = network(LARGEST, sizes.network).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(10, (batch,), generator=gen).to(device)
    return model, optimizer, x, y


def throughput(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    torch.backends.cudnn.benchmark = True
    out: dict[str, Any] = {"network": f"nb201 {LARGEST} {sizes.network}"}
    for batch in sizes.throughput_batches:
        for bf16 in (False, True):
            model, optimizer, x, y = _setup(device, sizes, batch)
            step = _step_fn(model, optimizer, bf16)
            for _ in range(3):  # warm-up: autotuning, lazy kernel loading, optimizer state
                step(x, y)
            key = f"batch{batch}_{'bf16' if bf16 else 'fp32'}"
            out[f"{key}_eager"] = _time_steps(
                device, functools.partial(step, x, y), sizes.throughput_steps, batch
            )
            if device.type != "cuda":
                out[f"{key}_graph"] = "skipped: needs CUDA"
                continue
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    step(x, y)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            captured = time.perf_counter()
            with torch.cuda.graph(graph):
                step(x, y)
            sync(device)
            capture_s = time.perf_counter() - captured
            timed = _time_steps(device, graph.replay, sizes.throughput_steps, batch)
            out[f"{key}_graph"] = {**timed, "capture_s": capture_s}
        if device.type == "cuda":
            out[f"batch{batch}_max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def compile_section(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    if device.type != "cuda":
        return {"skipped": "torch.compile is only timed on CUDA"}
    torch.backends.cudnn.benchmark = True
    model, optimizer, x, y = _setup(device, sizes, 256)
    compiled: Any = torch.compile(model)
    step = _step_fn(compiled, optimizer, bf16=True)
    start = time.perf_counter()
    step(x, y)
    sync(device)
    compile_s = time.perf_counter() - start
    step(x, y)
    return {
        "compile_s": compile_s,
        "bf16_batch256": _time_steps(device, lambda: step(x, y), sizes.compile_steps, 256),
    }


def _extract(tar_path: Path, into: Path) -> Path:
    with tarfile.open(tar_path) as archive:
        archive.extractall(into, filter="data")
    return into


def fear_paper_cifar10(device: torch.device, sizes: Sizes, tar_path: Path | None) -> dict[str, Any]:
    if tar_path is None:
        return {"skipped": "no --cifar-tar given"}
    from app.catalog.training import FearConfig, fear_paper
    from worker.data import DataRequest, load_dataset
    from worker.methods import fear
    from worker.methods.base import EvalRequest
    from worker.training import SgdConfig, TrainOptions, make_generator, prepare_model, train

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_cifar_") as tmp:
        started = time.perf_counter()
        data_dir = _extract(tar_path, Path(tmp))
        data = load_dataset(DataRequest("cifar10_folder"), device, data_dir)
        out["load_s"] = time.perf_counter() - started
        out["train_images"] = data.info.get("train_size")
        config = FearConfig.model_validate(
            {**fear_paper("nb201", "cifar10"), **sizes.fear_override}
        ).model_dump(mode="json")
        out["config"] = config
        # Warm-up apart: autotuning and lazy kernel loading for both batch sizes of the recipe.
        started = time.perf_counter()
        for batch in (config["stage1_batch_size"], config["stage2_batch_size"]):
            warm = prepare_model(network(LARGEST, {} if sizes is FULL else sizes.network), device)
            small = learnable_data(device, batch * 2, 16)
            train(
                warm,
                small,
                TrainOptions(
                    epochs=1, batch_size=batch, sgd=SgdConfig(lr=0.01), precision=config["precision"]
                ),
                make_generator(0),
            )
        sync(device)
        out["warmup_s"] = time.perf_counter() - started
        ctx = FixedContext(data, device, budget_s=sizes.fear_stage1_budget_s)  # type: ignore[arg-type]
        for label, genotype in (("smallest", SMALLEST), ("median", MEDIAN), ("largest", LARGEST)):
            result = fear.run(EvalRequest(1, "fear", "nb201", genotype, "cifar10_folder", 0, config), ctx)
            out[label] = {
                "genotype": genotype,
                "status": result.status,
                "score": result.score,
                "reason": result.reason,
                "timings": result.timings,
                "cost_s": result.cost_s,
                "stage1_epochs": result.info.get("stage1_epochs"),
            }
            out["stage1_budget_s"] = sizes.fear_stage1_budget_s
    return out


def _process_worker(args: tuple[str, dict[str, int], int, int]) -> dict[str, float]:
    device_name, options, steps, batch = args
    device = torch.device(device_name)
    torch.backends.cudnn.benchmark = True
    model, optimizer, x, y = _setup(device, Sizes(options, 0, 0, (), 0, {}, 0, (), 0, 0), batch)
    step = _step_fn(model, optimizer, bf16=device.type == "cuda")
    step(x, y)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    sync(device)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"train_s": time.perf_counter() - start, "max_memory_gib": memory or 0.0}


def processes(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """K spawned processes (never forked after CUDA init) each train ``process_steps`` steps of the
    largest network at batch 256; one such run counts as one evaluation."""
    out: dict[str, Any] = {"steps_per_evaluation": sizes.process_steps, "batch": 256}
    context = mp.get_context("spawn")
    for k in sizes.process_counts:
        args = [(str(device), sizes.network, sizes.process_steps, 256 if device.type == "cuda" else 16)] * k
        with context.Pool(k) as pool:
            rows = pool.map(_process_worker, args)
        slowest = max(r["train_s"] for r in rows)
        out[f"K{k}"] = {
            "per_process_s": [r["train_s"] for r in rows],
            "evaluations_per_hour": k * 3600 / slowest,
            "max_memory_gib_per_process": [r["max_memory_gib"] for r in rows],
        }
    base = out[f"K{sizes.process_counts[0]}"]["evaluations_per_hour"]
    out["best_vs_K1"] = max(out[f"K{k}"]["evaluations_per_hour"] for k in sizes.process_counts) / base
    return out


STACK_CELLS = (LARGEST, MEDIAN, SMALLEST)  # none has skip_connect on edge 0->1: they stack together


def _stacked_worker(device: torch.device, sizes: Sizes, k: int, grouped: bool, batch: int) -> dict[str, Any]:
    from worker.spaces.nb201_stacked import StackedNB201

    nets = [network(STACK_CELLS[i % len(STACK_CELLS)], sizes.network) for i in range(k)]
    model = StackedNB201(nets, grouped=grouped).to(device).train()  # type: ignore[arg-type]
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(10, (batch,), generator=gen).to(device)
    bf16 = device.type == "cuda"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        model.losses(logits.float(), y).sum().backward()
        model.clip_grad_norm_(5.0)
        optimizer.step()

    step()
    timed = _time_steps(device, step, sizes.process_steps, batch)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {**timed, "evaluations_per_hour": k * 3600 / timed["wall_s"], "max_memory_gib": memory}


def stacked(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """K architectures as one stacked network (``worker.spaces.nb201_stacked``), ``process_steps``
    steps at batch 256 per evaluation as in ``processes``: grouped (the GPU path) and exact mode;
    plus the grouped stack's fp32 agreement with each network trained alone on this device."""
    torch.backends.cudnn.benchmark = True
    batch = 256 if device.type == "cuda" else 16
    out: dict[str, Any] = {"steps_per_evaluation": sizes.process_steps, "batch": batch}
    for k in sizes.process_counts:
        for grouped in (True, False):
            out[f"K{k}_{'grouped' if grouped else 'exact'}"] = _stacked_worker(
                device, sizes, k, grouped, batch
            )
    base = out[f"K{sizes.process_counts[0]}_grouped"]["evaluations_per_hour"]
    out["best_grouped_vs_K1"] = (
        max(out[f"K{k}_grouped"]["evaluations_per_hour"] for k in sizes.process_counts) / base
    )
    with deterministic_fp32():
        from worker.spaces.nb201_stacked import StackedNB201

        alone = [network(g, sizes.network).to(device).train() for g in STACK_CELLS]
        stack = (
            StackedNB201(
                [network(g, sizes.network) for g in STACK_CELLS],  # type: ignore[misc]
                grouped=True,
            )
            .to(device)
            .train()
        )
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
        y = torch.randint(10, (batch,), generator=gen).to(device)
        with torch.no_grad():
            stack_loss = stack.losses(stack(x), y)
            alone_loss = torch.stack([F.cross_entropy(net(x), y) for net in alone])
        out["grouped_fp32_first_loss_max_abs_diff"] = float((stack_loss - alone_loss).abs().max())
    return out


def service_stack(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """The worker's stacked path (``worker.stacking.run_stack``, ``stack_mode`` auto: grouped on
    CUDA) for FEAR on K = 4 architectures against ``fear.run`` on each alone: wall time of both, and
    how far the stacked scores and stage-1 lengths are from the standalone ones."""
    from app.catalog.training import FearConfig
    from worker import stacking
    from worker.methods import fear
    from worker.methods.base import EvalRequest
    from worker.runtime import Claim

    images = 2048 if sizes is FULL else 32
    data = learnable_data(device, images, 256 if sizes is FULL else 16)
    config = FearConfig.model_validate(
        {
            "threshold": 0.6,
            "max_stage1_epochs": 6 if sizes is FULL else 1,
            "stage2_epochs": 2 if sizes is FULL else 1,
            "stage1_batch_size": 256 if sizes is FULL else 16,
            "stage2_batch_size": 256 if sizes is FULL else 16,
            "network": sizes.network,
            "data": {"cutout": 0},
        }
    ).model_dump(mode="json")
    genotypes = [STACK_CELLS[i % len(STACK_CELLS)] for i in range(4)]
    claims = [Claim(i, 1, "fear", "nb201", g, "learnable", 0, "", config) for i, g in enumerate(genotypes)]
    results: dict[int, Any] = {}
    # Warm both paths once (kernels, autotuning), then time each.
    for _ in range(2):
        started = time.perf_counter()
        alone = [
            fear.run(
                EvalRequest(c.evaluation_id, "fear", "nb201", c.genotype, "learnable", 0, config),
                FixedContext(data, device),
            )  # type: ignore[arg-type]
            for c in claims
        ]
        sync(device)
        alone_s = time.perf_counter() - started
        results.clear()
        started = time.perf_counter()
        stacking.run_stack(
            claims,
            [FixedContext(data, device) for _ in claims],  # type: ignore[misc]
            device,
            lambda c, r: results.__setitem__(c.evaluation_id, r),
            lambda c, exc: results.__setitem__(c.evaluation_id, exc),
            lambda c: results.__setitem__(c.evaluation_id, "ran alone"),
        )
        sync(device)
        stack_s = time.perf_counter() - started
    rows = []
    for c, own in zip(claims, alone, strict=True):
        got = results.get(c.evaluation_id)
        rows.append(
            {
                "genotype": c.genotype,
                "alone": [own.status, own.score, own.info.get("stage1_epochs")],
                "stacked": [got.status, got.score, got.info.get("stage1_epochs")]
                if hasattr(got, "status")
                else repr(got),
            }
        )
    return {
        "k": len(claims),
        "mode": "grouped" if stacking.grouped_mode(device) else "exact",
        "alone_s": alone_s,
        "stacked_s": stack_s,
        "speedup": alone_s / stack_s,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument(
        "--cifar-tar", type=Path, default=None, help="CIFAR-10 jpg tarball (image-folder layout)"
    )
    parser.add_argument("--smoke", action="store_true", help="CPU only, tiny sizes")
    parser.add_argument("--budget-s", type=float, default=285.0, help="no section starts after this many s")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --smoke to check the script on a CPU")
    device = torch.device("cpu" if args.smoke else "cuda")
    sizes = SMOKE if args.smoke else FULL
    report = Report(args.out)
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("environment", lambda: environment(device, sizes)),
        ("training_parity", lambda: training_parity(device, sizes)),
        ("same_seed_twice", lambda: same_seed_twice(device, sizes)),
        ("zero_cost_parity", lambda: zero_cost_parity(device, sizes)),
        ("throughput", lambda: throughput(device, sizes)),
        ("loop_cuda_graph", lambda: loop_cuda_graph(device, sizes)),
        ("fear_paper_cifar10", lambda: fear_paper_cifar10(device, sizes, args.cifar_tar)),
        ("processes", lambda: processes(device, sizes)),
        ("stacked", lambda: stacked(device, sizes)),
        ("service_stack", lambda: service_stack(device, sizes)),
        ("compile", lambda: compile_section(device, sizes)),
    ]
    failed = 0
    for name, run in sections:
        elapsed = time.perf_counter() - report.started
        if elapsed > args.budget_s:
            report.record(
                name, {"skipped": f"out of time ({elapsed:.0f} s > --budget-s {args.budget_s:.0f})"}
            )
            continue
        start = time.perf_counter()
        try:
            result = run()
        except Exception as exc:  # one broken section must not lose the others
            failed += 1
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        result["section_s"] = round(time.perf_counter() - start, 2)
        report.record(name, result)
        print(f"{name}: {result['section_s']} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
