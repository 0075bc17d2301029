"""Training-loop throughput: ``worker.training.train`` vs a minimal hand-written loop and vs a
torchvision-transforms + DataLoader loop, same network, data and batch size, on the CPU.

    python -m bench.bench_training [--C 16] [--N 5] [--images 2048] [--batch 256] [--repeats 2]
    python -m bench.bench_training --preset tiny --dataset synthetic_cifar10 --data-dir DIR [--archs 3]
        [--methods fear,shortreg,full] [--threads 2]

The second form times the method presets end to end (dataset loading reported separately) on the
first ``--archs`` architectures of the FEAR paper's NB201 list.

The data are random uint8 32x32 images with CIFAR normalisation and crop+flip augmentation (the
speed does not depend on the pixel values). Each loop trains the same freshly initialised network
for one epoch per repeat after one warm-up step; repeats are interleaved across loops so machine
load hits them alike, and the best repeat of each loop counts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from app.catalog.training import METHODS
from app.genotypes import nb201 as nb201_genotype
from bench.context import OfflineRunMixin
from worker.data import DataRequest, load_dataset
from worker.data.device_dataset import DeviceTensorDataset
from worker.methods import fear, full, shortreg
from worker.methods.base import EvalRequest
from worker.spaces import build
from worker.spaces.base import NetworkSpec
from worker.training import SgdConfig, TrainOptions, make_generator, train

# NB201 index 1 (three 3x3 convs, 0.80 M params at C=16 N=5): a mid-sized network of the space.
GENOTYPE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
SGD = SgdConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, grad_clip=5.0)


def make_network(C: int, N: int) -> nn.Module:
    torch.manual_seed(0)
    return build(NetworkSpec("nb201", GENOTYPE, 10, 32, {"C": C, "N": N}))


def make_data(images: int) -> DeviceTensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (images,), generator=gen)
    cpu = torch.device("cpu")
    augment = {"mean": MEAN, "std": STD, "crop_padding": 4, "flip": True}
    return DeviceTensorDataset("bench", 10, x, y, x[:256], y[:256], cpu, **augment)


def run_ours(model: nn.Module, data: DeviceTensorDataset, batch: int) -> float:
    """Seconds for one epoch of ``worker.training.train`` (lr schedule, accuracy and loss tracking)."""
    return train(model, data, TrainOptions(epochs=1, batch_size=batch, sgd=SGD), make_generator(0)).seconds


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


def run_minimal(model: nn.Module, data: DeviceTensorDataset, batch: int) -> float:
    """The same maths with nothing else: zero_grad, forward, CE, backward, clip, step."""
    return _timed_plain_steps(model, data.train_batches(batch, make_generator(0)))


def _timed_plain_steps(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The baselines' textbook step (zero_grad, forward, CE, backward, clip, step), timed."""
    optimizer = _sgd(model)
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    return time.perf_counter() - start


class TransformDataset(Dataset):
    """Per-sample torchvision transforms on uint8 tensors, as a typical CIFAR pipeline does."""

    def __init__(self, data: DeviceTensorDataset) -> None:
        self.x, self.y = data.train_x, data.train_y
        self.transform = v2.Compose(
            [
                v2.RandomCrop(32, padding=4),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(MEAN, STD),
            ]
        )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.x[index]), self.y[index]


def run_dataloader(model: nn.Module, data: DeviceTensorDataset, batch: int) -> float:
    """A torchvision-transforms DataLoader loop (num_workers=0: a worker process would compete
    with training for the 2 cores)."""
    loader = DataLoader(
        TransformDataset(data), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    return _timed_plain_steps(model, loader)


def warm_up(model: nn.Module, data: DeviceTensorDataset, batch: int) -> None:
    """One step so that first-call costs (oneDNN primitives, optimiser import) are not timed."""
    x, y = next(data.train_batches(batch, make_generator(1)))
    optimizer = _sgd(model)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


PAPER_ARCHS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fear_natsbench_tss_1000_archids.txt"
RUNNERS = {"fear": fear.run, "shortreg": shortreg.run, "full": full.run}


class LocalContext(OfflineRunMixin):
    """A RunContext without a database: datasets through the worker's loader, no stage-1 budget."""

    def __init__(self, data_dir: Path) -> None:
        self.device = torch.device("cpu")
        self.data_dir = data_dir
        self.load_s: list[float] = []

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> Any:
        started = time.perf_counter()
        request = DataRequest(
            dataset,
            train_size=data_config["train_size"],
            test_size=data_config["test_size"],
            subset_seed=data_config["subset_seed"],
            synthetic=data_config["synthetic"],
        )
        data = load_dataset(request, self.device, self.data_dir)
        self.load_s.append(time.perf_counter() - started)
        return data


def time_presets(preset: str, dataset: str, data_dir: Path, archs: int, methods: list[str]) -> None:
    indices = [int(v) for v in PAPER_ARCHS.read_text().split(",")[:archs]]
    ctx = LocalContext(data_dir)
    print(f"preset {preset!r} on {dataset}, NB201, {torch.get_num_threads()} CPU threads\n")
    print("| method | arch | status | score | epochs | cost s | wall s (no load) | data load s |")
    print("|---|---|---|---|---|---|---|---|")
    for method in methods:
        runner, info = RUNNERS[method], METHODS[method]
        config = info.config_model.model_validate(info.presets[preset]("nb201", dataset)).model_dump(
            mode="json"
        )
        for index in indices:
            genotype = nb201_genotype.from_index(index).canonical
            loads = len(ctx.load_s)
            started = time.perf_counter()
            result = runner(EvalRequest(index, method, "nb201", genotype, dataset, 0, config), ctx)
            load = sum(ctx.load_s[loads:])
            wall = time.perf_counter() - started - load
            score = "-" if result.score is None else f"{result.score:.4f}"
            times = [f"{result.cost_s:.1f}", f"{wall:.1f}", f"{load:.1f}"]
            epochs = result.info.get("stage1_epochs", result.info.get("epochs"))
            if "stage2" in result.info:
                epochs = f"{epochs}+{len(result.info['stage2']['acc'])}"
            cells = [method, index, result.status, score, epochs, *times]
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=5)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--preset", help="time this method preset instead (tiny, cpu, paper)")
    parser.add_argument("--dataset", default="synthetic_cifar10")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/fastarchrank-bench"))
    parser.add_argument("--archs", type=int, default=3)
    parser.add_argument("--methods", default="fear,shortreg,full", help="comma-separated, for --preset")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.preset:
        time_presets(args.preset, args.dataset, args.data_dir, args.archs, args.methods.split(","))
        return

    data = make_data(args.images)
    loops: dict[str, Callable[[nn.Module, DeviceTensorDataset, int], float]] = {
        "worker.training.train": run_ours,
        "minimal hand-written loop": run_minimal,
        "torchvision DataLoader loop": run_dataloader,
    }
    warm_up(make_network(args.C, args.N), data, args.batch)
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(args.repeats):
        for name, loop in loops.items():
            best[name] = min(best[name], loop(make_network(args.C, args.N), data, args.batch))

    rate = {name: args.images / seconds for name, seconds in best.items()}
    ours = rate["worker.training.train"]
    print(
        f"NB201 C={args.C} N={args.N} ({GENOTYPE}), {args.images} images/epoch, batch {args.batch}, "
        f"{torch.get_num_threads()} CPU threads, best of {args.repeats}\n"
    )
    print("| loop | images/s | ours / this |")
    print("|---|---|---|")
    for name, value in rate.items():
        print(f"| {name} | {value:.0f} | {ours / value:.3f} |")


if __name__ == "__main__":
    main()
