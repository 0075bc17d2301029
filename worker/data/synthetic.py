"""FEAR's synthetic CIFAR-10 replacement as one deterministic stream, generated in full or as a prefix.

One seeded ``torch.Generator`` first initialises 10 labelling nets, each Linear(3072, 3072) -> ReLU ->
Linear(3072, 1) with PyTorch's default initialisation (consumed in module-construction order, so the
nets equal ``torch.manual_seed(seed)`` followed by building the 10 ``nn.Sequential`` nets), then draws
the images. Each image is drawn i.i.d. N(0, 1) in HWC order (32, 32, 3), as the FEAR authors did; the
nets score its HWC flattening and it is stored CHW (3, 32, 32), the layout every model here expects.
Its label is the argmax of the 10 scores. Classes accept images first come first served until they hold
``per_class``; within a class the first ``train_per_class`` accepted go to train, the rest to test.
Drawing stops when every class is full or ``draw_budget`` images were drawn.

Whether a draw is kept, and in which split, depends only on the draws before it. So the first n train
images of the full set (in draw order, which is the stored order) are exactly what a generation that
stops after n train acceptances yields: a zero-cost batch generates that prefix and nothing more.

Labels do not depend on the device, the BLAS library, the chunk size or the thread count: the scores
are computed in float32 (anywhere: CPU or GPU, TF32 off) and every draw whose top-two margin is below
``RELABEL_MARGIN`` (200x the largest float32 error measured, 5e-7) is rescored in float64 on the CPU.
A label is therefore the argmax of the float64 scores; a flip would need two classes within float64
rounding of each other (~1e-15), which is not expected in 1e6 draws. The images come from the CPU
generator, whatever device labels them.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from worker.data.base import GenerationProgress, ProgressCallback
from worker.data.disk_cache import load_or_build
from worker.data.raw import RawSplits

NUM_CLASSES = 10
HEIGHT = WIDTH = 32
CHANNELS = 3
FEATURES = HEIGHT * WIDTH * CHANNELS
CPU_DRAWS_PER_CHUNK = 1024  # an efficient matmul that bounds memory (hidden layer: ~130 MB)
CUDA_DRAWS_PER_CHUNK = 8192  # ~1 GB of hidden units: big enough to keep a large GPU busy
RELABEL_MARGIN = 1e-4  # float32 scores closer than this are decided in float64
PROGRESS_INTERVAL_S = 1.0
FORMAT_VERSION = 2  # 2: float64-certified labels, device-independent cache name

Scorer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SyntheticParams:
    """Everything the generated content depends on (and so the cache key)."""

    per_class: int
    train_per_class: int
    draw_budget: int
    seed: int

    def check(self) -> None:
        if not 1 <= self.train_per_class <= self.per_class:
            raise ValueError(
                f"train_per_class ({self.train_per_class}) must be between 1 and per_class ({self.per_class})"
            )
        if self.draw_budget < 1:
            raise ValueError(f"draw_budget must be positive, got {self.draw_budget}")

    def cache_name(self, train_prefix: int | None = None) -> str:
        prefix = "" if train_prefix is None else f"-train_prefix{train_prefix}"
        return (
            f"synthetic_cifar10-v{FORMAT_VERSION}-seed{self.seed}-per_class{self.per_class}"
            f"-train{self.train_per_class}-budget{self.draw_budget}{prefix}.pt"
        )


def build_labelling_nets(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The 10 nets' parameters stacked: w1 (10*3072, 3072), b1 (10*3072,), w2 (10, 3072), b2 (10,).

    Initialised in place, block by block, in exactly the order and with exactly the calls
    ``nn.Linear.reset_parameters`` makes, so the random stream matches building the modules.
    """
    w1 = torch.empty(NUM_CLASSES * FEATURES, FEATURES)
    b1 = torch.empty(NUM_CLASSES * FEATURES)
    w2 = torch.empty(NUM_CLASSES, FEATURES)
    b2 = torch.empty(NUM_CLASSES)
    bound = 1.0 / math.sqrt(FEATURES)  # both layers have fan_in 3072
    for k in range(NUM_CLASSES):
        rows = slice(k * FEATURES, (k + 1) * FEATURES)
        torch.nn.init.kaiming_uniform_(w1[rows], a=math.sqrt(5), generator=generator)
        torch.nn.init.uniform_(b1[rows], -bound, bound, generator=generator)
        torch.nn.init.kaiming_uniform_(w2[k : k + 1], a=math.sqrt(5), generator=generator)
        torch.nn.init.uniform_(b2[k : k + 1], -bound, bound, generator=generator)
    return w1, b1, w2, b2


def score_images(flat_images: torch.Tensor, nets: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(n, 10) scores of (n, 3072) flattened images, in the dtype and on the device of the inputs."""
    w1, b1, w2, b2 = nets
    hidden = torch.addmm(b1, flat_images, w1.T).relu_()
    return torch.einsum("nkh,kh->nk", hidden.view(-1, NUM_CLASSES, FEATURES), w2) + b2


def float64_scores(flat_images: torch.Tensor, nets: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The reference scores on the CPU in float64, one net at a time so that no float64 copy of all
    ten first layers (755 MB) is ever held."""
    w1, b1, w2, b2 = nets
    x = flat_images.cpu().double()
    scores = torch.empty(x.shape[0], NUM_CLASSES, dtype=torch.float64)
    for k in range(NUM_CLASSES):
        rows = slice(k * FEATURES, (k + 1) * FEATURES)
        hidden = torch.addmm(b1[rows].double(), x, w1[rows].double().T).relu_()
        scores[:, k] = hidden @ w2[k].double() + float(b2[k])
    return scores


def certified_labels(
    flat_images: torch.Tensor, nets_cpu: tuple[torch.Tensor, ...], fast_scores: Scorer
) -> tuple[torch.Tensor, int]:
    """CPU int64 labels = argmax of the float64 scores, and how many draws needed the float64 pass."""
    scores = fast_scores(flat_images).float().cpu()
    top2 = scores.topk(2, dim=1).values
    labels = scores.argmax(dim=1)
    close = (top2[:, 0] - top2[:, 1] < RELABEL_MARGIN).nonzero()[:, 0]
    if close.numel():
        labels[close] = float64_scores(flat_images.cpu()[close], nets_cpu).argmax(dim=1)
    return labels, int(close.numel())


def _fast_scorer(nets_cpu: tuple[torch.Tensor, ...], device: torch.device) -> Scorer:
    if device.type == "cpu":
        return lambda flat: score_images(flat, nets_cpu)
    nets = tuple(t.to(device) for t in nets_cpu)
    return lambda flat: score_images(flat.to(device, non_blocking=True), nets)


def generate_synthetic(
    per_class: int,
    train_per_class: int,
    draw_budget: int,
    seed: int,
    compute_device: torch.device | None = None,
    *,
    train_prefix: int | None = None,
    draws_per_chunk: int | None = None,
    progress: ProgressCallback | None = None,
    fast_scores: Callable[[tuple[torch.Tensor, ...]], Scorer] | None = None,
) -> dict[str, Any]:
    """Generate the dataset (or, with ``train_prefix``, its first ``train_prefix`` train images and
    no test images); returns the cache payload (tensors + ``info``).

    ``compute_device`` only moves the float32 scoring; ``draws_per_chunk`` only changes the matmul
    size; neither changes the content. ``fast_scores`` replaces the float32 scorer (tests simulate
    another device's rounding with it)."""
    params = SyntheticParams(per_class, train_per_class, draw_budget, seed)
    params.check()
    if train_prefix is not None and train_prefix < 1:
        raise ValueError(f"train_prefix must be positive, got {train_prefix}")
    device = torch.device(compute_device or "cpu")
    chunk = draws_per_chunk or (CUDA_DRAWS_PER_CHUNK if device.type == "cuda" else CPU_DRAWS_PER_CHUNK)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    nets = build_labelling_nets(generator)
    scorer = fast_scores(nets) if fast_scores is not None else _fast_scorer(nets, device)

    counts = torch.zeros(NUM_CLASSES, dtype=torch.int64)
    kept_images, kept_labels, kept_positions = [], [], []
    draws_used, relabelled, train_kept = draw_budget, 0, 0
    last_report = 0.0
    wanted = "full" if train_prefix is None else f"first {train_prefix} train images"
    previous_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 errors (~1e-3) would swamp the margin
    try:
        first = 0
        while first < draw_budget:
            n = min(chunk, draw_budget - first)
            if train_prefix is not None:
                # Each draw adds at most one train image: never label more draws than could be needed.
                n = min(n, max(train_prefix - train_kept, 16))
            images = torch.randn(n, HEIGHT, WIDTH, CHANNELS, generator=generator)
            labels, close = certified_labels(images.view(n, FEATURES), nets, scorer)
            relabelled += close
            # Position of each draw within its class so far = earlier acceptances + earlier same-class
            # draws in this chunk; a draw is kept while that position is below the cap.
            same_class_before = F.one_hot(labels, NUM_CLASSES).cumsum(0).gather(1, labels[:, None])[:, 0] - 1
            positions = counts[labels] + same_class_before
            accepted = positions < per_class
            keep = accepted
            if train_prefix is not None:
                # Keep train draws up to the one that brings the train split to ``train_prefix``.
                keep = accepted & (positions < train_per_class)
                reached = (train_kept + keep.cumsum(0) >= train_prefix) & keep
                if bool(reached.any()):
                    last = int(reached.nonzero()[0, 0])
                    keep[last + 1 :] = False
                    draws_used = first + last + 1
                train_kept += int(keep.sum())
            kept_images.append(images[keep].permute(0, 3, 1, 2))
            kept_labels.append(labels[keep])
            kept_positions.append(positions[keep])
            counts += torch.bincount(labels[accepted], minlength=NUM_CLASSES)
            done_prefix = train_prefix is not None and train_kept >= train_prefix
            full = bool((counts == per_class).all())
            if full and not done_prefix:
                draws_used = first + int(accepted.nonzero().max()) + 1
            stopped = full or done_prefix or first + n >= draw_budget
            now = time.perf_counter()
            if progress is not None and (now - last_report >= PROGRESS_INTERVAL_S or stopped):
                last_report = now
                drawn = draws_used if stopped else first + n
                progress(GenerationProgress(wanted, tuple(counts.tolist()), per_class, drawn, draw_budget))
            if stopped:
                break
            first += n
    finally:
        torch.set_float32_matmul_precision(previous_precision)

    images = torch.cat(kept_images).contiguous()
    labels = torch.cat(kept_labels)
    in_train = torch.cat(kept_positions) < train_per_class
    train_y, test_y = labels[in_train], labels[~in_train]
    info = {
        "seed": seed,
        "per_class": per_class,
        "train_per_class": train_per_class,
        "draw_budget": draw_budget,
        "draws_used": draws_used,
        "train_prefix": train_prefix,
        # Prefix: whether it holds all ``train_prefix`` images; full set: whether every class filled.
        "complete": bool((counts == per_class).all()) if train_prefix is None else train_kept >= train_prefix,
        "generated_train_class_counts": torch.bincount(train_y, minlength=NUM_CLASSES).tolist(),
        "generated_test_class_counts": torch.bincount(test_y, minlength=NUM_CLASSES).tolist(),
        "generation_seconds": round(time.perf_counter() - started, 3),
        "labelled_on": device.type,
        "float64_relabelled": relabelled,
        "labels_sha256": hashlib.sha256(labels.numpy().tobytes()).hexdigest(),
        "layout": "CHW (drawn HWC, labelled on the HWC flattening)",
        "format_version": FORMAT_VERSION,
    }
    return {
        "train_x": images[in_train],
        "train_y": train_y,
        "test_x": images[~in_train],
        "test_y": test_y,
        "info": info,
    }


def cache_file_name(
    per_class: int, train_per_class: int, draw_budget: int, seed: int, train_prefix: int | None = None
) -> str:
    """The cache file's name: the parameters only, never the device (the content does not depend on it)."""
    return SyntheticParams(per_class, train_per_class, draw_budget, seed).cache_name(train_prefix)


def _prefix_of(payload: dict[str, Any], train_prefix: int) -> dict[str, Any] | None:
    """The train prefix cut from a full payload, or None when the full set holds fewer train images."""
    if payload["train_y"].shape[0] < train_prefix:
        return None
    empty = payload["test_x"][:0]
    return {
        "train_x": payload["train_x"][:train_prefix].clone(),
        "train_y": payload["train_y"][:train_prefix].clone(),
        "test_x": empty,
        "test_y": payload["test_y"][:0],
        "info": {**payload["info"], "train_prefix": train_prefix, "cut_from_full_set": True},
    }


def load_synthetic(
    per_class: int,
    train_per_class: int,
    draw_budget: int,
    seed: int,
    cache_dir: Path,
    compute_device: torch.device | None = None,
    *,
    train_prefix: int | None = None,
    progress: ProgressCallback | None = None,
) -> RawSplits:
    """The dataset from ``cache_dir``, generating it first if no process has yet.

    With ``train_prefix`` only the first ``train_prefix`` train images are returned (no test split):
    cut from the full set's file when that exists, else generated (and cached) on their own."""
    params = SyntheticParams(per_class, train_per_class, draw_budget, seed)
    params.check()
    cache_dir = Path(cache_dir)
    full_path = cache_dir / params.cache_name()
    path = full_path if train_prefix is None else cache_dir / params.cache_name(train_prefix)
    payload: dict[str, Any] | None = None
    built = False
    if train_prefix is not None and full_path.is_file():
        full, _ = load_or_build(full_path, lambda: generate_synthetic(*_args(params), compute_device))
        payload = _prefix_of(full, train_prefix)
    if payload is None:
        payload, built = load_or_build(
            path,
            lambda: generate_synthetic(
                *_args(params), compute_device, train_prefix=train_prefix, progress=progress
            ),
        )
    return RawSplits(
        payload["train_x"],
        payload["train_y"],
        payload["test_x"],
        payload["test_y"],
        source=str(path),
        info={**payload["info"], "cache_file": str(path), "generated_now": built},
    )


def _args(params: SyntheticParams) -> tuple[int, int, int, int]:
    return params.per_class, params.train_per_class, params.draw_budget, params.seed
