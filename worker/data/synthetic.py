"""FEAR's synthetic CIFAR-10 replacement, generated deterministically and cached on disk.

One seeded ``torch.Generator`` first initialises 10 labelling nets, each Linear(3072, 3072) -> ReLU ->
Linear(3072, 1) with PyTorch's default initialisation (consumed in module-construction order, so the
nets equal ``torch.manual_seed(seed)`` followed by building the 10 ``nn.Sequential`` nets), then draws
the images. Each image is drawn i.i.d. N(0, 1) in HWC order (32, 32, 3), as the FEAR authors did; the
nets score its HWC flattening and it is stored CHW (3, 32, 32), the layout every model here expects.
Its label is the argmax of the 10 scores. Classes accept images first come first served until they hold
``per_class``; within a class the first ``train_per_class`` accepted go to train, the rest to test.
Drawing stops when every class is full or ``draw_budget`` images were drawn.

The 10 nets run as one stacked matmul over chunks of draws (3072 -> 30720 hidden units), which is
where all the time goes: about 2 s per 1024 draws on 2 CPU cores.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from worker.data.disk_cache import load_or_build
from worker.data.raw import RawSplits

NUM_CLASSES = 10
HEIGHT = WIDTH = 32
CHANNELS = 3
FEATURES = HEIGHT * WIDTH * CHANNELS
DRAWS_PER_CHUNK = 1024  # big enough for an efficient matmul, small enough to bound memory (~130 MB)
FORMAT_VERSION = 1  # bump when the generated content for the same options changes


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


def label_images(flat_images: torch.Tensor, nets: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Argmax over the 10 nets' scores of (n, 3072) flattened images."""
    w1, b1, w2, b2 = nets
    hidden = torch.addmm(b1, flat_images, w1.T).relu_()
    scores = torch.einsum("nkh,kh->nk", hidden.view(-1, NUM_CLASSES, FEATURES), w2) + b2
    return scores.argmax(dim=1)


def generate_synthetic(
    per_class: int,
    train_per_class: int,
    draw_budget: int,
    seed: int,
    compute_device: torch.device | None = None,
) -> dict[str, Any]:
    """Generate the dataset; returns the cache payload (tensors + ``info``).

    Images are always drawn on the CPU generator, so they are identical everywhere; ``compute_device``
    only moves the labelling matmuls (a GPU may round differently, so its labels can differ at near-ties
    and its output is cached under a different name).
    """
    if not 1 <= train_per_class <= per_class:
        raise ValueError(f"train_per_class ({train_per_class}) must be between 1 and per_class ({per_class})")
    if draw_budget < 1:
        raise ValueError(f"draw_budget must be positive, got {draw_budget}")
    device = compute_device or torch.device("cpu")
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    nets = tuple(t.to(device) for t in build_labelling_nets(generator))

    counts = torch.zeros(NUM_CLASSES, dtype=torch.int64)
    kept_images, kept_labels, kept_positions = [], [], []
    draws_used = draw_budget
    previous_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 would change labels on a GPU
    try:
        for first in range(0, draw_budget, DRAWS_PER_CHUNK):
            n = min(DRAWS_PER_CHUNK, draw_budget - first)
            images = torch.randn(n, HEIGHT, WIDTH, CHANNELS, generator=generator)
            labels = label_images(images.view(n, FEATURES).to(device), nets).cpu()
            # Position of each draw within its class so far = earlier acceptances + earlier same-class
            # draws in this chunk; a draw is kept while that position is below the cap.
            same_class_before = F.one_hot(labels, NUM_CLASSES).cumsum(0).gather(1, labels[:, None])[:, 0] - 1
            positions = counts[labels] + same_class_before
            accepted = positions < per_class
            kept_images.append(images[accepted].permute(0, 3, 1, 2))
            kept_labels.append(labels[accepted])
            kept_positions.append(positions[accepted])
            counts += torch.bincount(labels[accepted], minlength=NUM_CLASSES)
            if bool((counts == per_class).all()):
                draws_used = first + int(accepted.nonzero().max()) + 1
                break
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
        "complete": bool((counts == per_class).all()),
        "generated_train_class_counts": torch.bincount(train_y, minlength=NUM_CLASSES).tolist(),
        "generated_test_class_counts": torch.bincount(test_y, minlength=NUM_CLASSES).tolist(),
        "generation_seconds": round(time.perf_counter() - started, 3),
        "labelled_on": device.type,
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
    per_class: int, train_per_class: int, draw_budget: int, seed: int, device_type: str
) -> str:
    suffix = "" if device_type == "cpu" else f"-{device_type}"
    return (
        f"synthetic_cifar10-v{FORMAT_VERSION}-seed{seed}-per_class{per_class}-train{train_per_class}"
        f"-budget{draw_budget}{suffix}.pt"
    )


def load_synthetic(
    per_class: int,
    train_per_class: int,
    draw_budget: int,
    seed: int,
    cache_dir: Path,
    compute_device: torch.device | None = None,
) -> RawSplits:
    """The dataset from ``cache_dir``, generating it first if no process has yet."""
    device = compute_device or torch.device("cpu")
    path = Path(cache_dir) / cache_file_name(per_class, train_per_class, draw_budget, seed, device.type)
    payload, built = load_or_build(
        path, lambda: generate_synthetic(per_class, train_per_class, draw_budget, seed, device)
    )
    return RawSplits(
        payload["train_x"],
        payload["train_y"],
        payload["test_x"],
        payload["test_y"],
        source=str(path),
        info={**payload["info"], "cache_file": str(path), "generated_now": built},
    )
