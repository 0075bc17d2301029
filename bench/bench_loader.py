"""Images per second: the device-resident loader vs a torchvision DataLoader pipeline on the same data.

    python -m bench.bench_loader [--data-dir /tmp] [--batches 60] [--threads 0] [--synthetic-draws 0]

Data: real CIFAR-10 from the image folder ``<data-dir>/cifar10-jpg`` when it exists (extract
``/work/shared/data/cifar10-jpg.tar.gz`` into /tmp, outside the repository), else 50,000 random uint8
images. Both pipelines do the same work: random crop 32 with padding 4, horizontal flip, conversion to
float and normalisation, batch 256, shuffled. The torchvision pipeline is the classic one
(``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``) over in-memory images, as
``torchvision.datasets.CIFAR10`` serves them. Timing starts after the first batch, so worker start-up
is not counted. ``--synthetic-draws N`` also times N draws of the synthetic generator.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from app.catalog.datasets import get_dataset
from worker.data import DataRequest, load_dataset
from worker.data.device_dataset import DeviceTensorDataset

BATCH = 256
CIFAR = get_dataset("cifar10")


class InMemoryCifar(Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per sample: a PIL image from HWC uint8, then transforms."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform: transforms.Compose) -> None:
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def load_images(data_dir: Path) -> tuple[DeviceTensorDataset, str]:
    if (data_dir / "cifar10-jpg").is_dir():
        started = time.perf_counter()
        dataset = load_dataset(DataRequest("cifar10_folder"), torch.device("cpu"), data_dir)
        how = "decoded and cached" if dataset.info["decoded_now"] else "read from the decode cache"
        seconds = time.perf_counter() - started
        return dataset, f"CIFAR-10 image folder {data_dir / 'cifar10-jpg'} ({how} in {seconds:.1f} s)"
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50_000, 3, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (50_000,), generator=generator)
    dataset = DeviceTensorDataset(
        "random", 10, images, labels, images[:1000], labels[:1000], torch.device("cpu"),
        mean=CIFAR.mean, std=CIFAR.std, crop_padding=4, flip=True,
    )  # fmt: skip
    return dataset, "50,000 random uint8 images (no CIFAR-10 image folder found)"


def images_per_second(batches, limit: int) -> float:
    iterator = iter(batches)
    next(iterator)  # warm-up: worker start-up, first allocations
    count, started = 0, time.perf_counter()
    for _ in range(limit):
        try:
            x, _ = next(iterator)
        except StopIteration:
            break
        count += x.shape[0]
    return count / (time.perf_counter() - started)


def device_loader_rate(dataset: DeviceTensorDataset, limit: int) -> float:
    return images_per_second(dataset.train_batches(BATCH, torch.Generator().manual_seed(0)), limit)


def torchvision_rate(dataset: DeviceTensorDataset, workers: int, limit: int) -> float:
    pipeline = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR.mean, CIFAR.std),
        ]
    )
    images_hwc = dataset.train_x.permute(0, 2, 3, 1).contiguous().numpy()
    source = InMemoryCifar(images_hwc, dataset.train_y.numpy(), pipeline)
    loader = DataLoader(source, batch_size=BATCH, shuffle=True, num_workers=workers)
    return images_per_second(loader, limit)


def synthetic_rate(draws: int) -> float:
    from worker.data.synthetic import generate_synthetic

    started = time.perf_counter()
    # per_class above the draw count: nothing fills, so exactly ``draws`` draws are labelled.
    generate_synthetic(per_class=6000, train_per_class=5000, draw_budget=draws, seed=42)
    return draws / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--batches", type=int, default=60, help="timed batches per pipeline")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--synthetic-draws", type=int, default=0, help="also time this many synthetic draws")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dataset, described = load_images(args.data_dir)
    print(f"data: {described}; torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}\n")
    rates = {"device loader (batched tensor ops)": device_loader_rate(dataset, args.batches)}
    for workers in (0, 2):
        rates[f"torchvision DataLoader, num_workers={workers}"] = torchvision_rate(
            dataset, workers, args.batches
        )
    fastest_baseline = max(rate for name, rate in rates.items() if name.startswith("torchvision"))
    device_rate = rates["device loader (batched tensor ops)"]
    print(f"| pipeline (batch {BATCH}, crop+flip+normalise) | images/s | device loader speed-up |")
    print("|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {device_rate / rate:.1f}x |")
    print(f"\ndevice loader / best torchvision pipeline: {device_rate / fastest_baseline:.1f}x")
    if args.synthetic_draws:
        rate = synthetic_rate(args.synthetic_draws)
        print(f"\nsynthetic generator: {rate:,.0f} draws/s ({args.synthetic_draws} draws, net init included)")


if __name__ == "__main__":
    main()
