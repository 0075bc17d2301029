"""CUDA path check for a lent GPU (under 5 minutes); prints one JSON summary.

    python -m bench.gpu_check            # on a CUDA machine
    python -m bench.gpu_check --smoke    # CPU only, tiny sizes: checks that the script itself runs

1. Consistency: the same tiny FEAR run and the same tiny ``full`` run (NB201 C=8 N=1, a learnable
   10-class 32x32 tensor dataset) on the CPU and on CUDA (bf16 autocast, channels_last). The data
   order and augmentation come from one CPU generator on both, initial weights are identical, so
   scores differ only through arithmetic; they must agree within ``TOLERANCE``.
2. Throughput: ``worker.training.train`` at batch 256 on the largest NB201 network (all 3x3 convs,
   C=16 N=5, 1.53 M params), dataset resident on the GPU, compared with a minimal fp32 loop and
   with test-set evaluation speed.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.catalog.training import FearConfig, FullConfig
from bench.context import OfflineRunMixin
from worker.data.device_dataset import DeviceTensorDataset
from worker.methods import fear, full
from worker.methods.base import EvalRequest
from worker.spaces import build
from worker.spaces.base import NetworkSpec
from worker.training import SgdConfig, TrainOptions, evaluate, make_generator, prepare_model, train

TOLERANCE = 0.05  # absolute difference of accuracies (fractions) allowed between CPU and CUDA
TINY_GENOTYPE = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)
LARGEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


class LocalContext(OfflineRunMixin):
    """A RunContext without a database: fixed dataset, progress discarded, no stage-1 budget."""

    def __init__(self, data: DeviceTensorDataset, device: torch.device) -> None:
        self.data = data
        self.device = device

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> DeviceTensorDataset:
        return self.data


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


def consistency(device: torch.device, smoke: bool) -> dict[str, Any]:
    network = {"C": 8, "N": 1}
    data_options = {"cutout": 0}
    fear_config = FearConfig.model_validate(
        {
            "threshold": 0.6,
            "max_stage1_epochs": 3 if smoke else 10,
            "stage1_batch_size": 64,
            "stage2_epochs": 2,
            "stage2_batch_size": 128,
            "network": network,
            "data": data_options,
        }
    ).model_dump(mode="json")
    full_config = FullConfig.model_validate(
        {"epochs": 2 if smoke else 4, "batch_size": 64, "network": network, "data": data_options}
    ).model_dump(mode="json")
    sizes = (256, 128) if smoke else (2000, 1000)
    outcome: dict[str, Any] = {}
    for where in ("cpu", str(device)):
        dev = torch.device(where)
        ctx = LocalContext(learnable_data(dev, *sizes), dev)
        fear_result = fear.run(
            EvalRequest(1, "fear", "nb201", TINY_GENOTYPE, "learnable", 0, fear_config), ctx
        )
        full_result = full.run(
            EvalRequest(2, "full", "nb201", TINY_GENOTYPE, "learnable", 0, full_config), ctx
        )
        outcome[where] = {
            "fear_status": fear_result.status,
            "fear_score": fear_result.score,
            "fear_stage1_epochs": fear_result.info["stage1_epochs"],
            "fear_seconds": fear_result.cost_s,
            "full_test_acc": full_result.score,
            "full_seconds": full_result.cost_s,
        }
    cpu, other = outcome["cpu"], outcome[str(device)]
    diffs = {
        "fear_score": _diff(cpu["fear_score"], other["fear_score"]),
        "full_test_acc": _diff(cpu["full_test_acc"], other["full_test_acc"]),
    }
    outcome["abs_diff"] = diffs
    outcome["tolerance"] = TOLERANCE
    outcome["ok"] = cpu["fear_status"] == other["fear_status"] and all(
        d is not None and d <= TOLERANCE for d in diffs.values()
    )
    return outcome


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else abs(a - b)


def _timed(device: torch.device, fn: Any) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def throughput(device: torch.device, smoke: bool) -> dict[str, Any]:
    images, batch = (512, 128) if smoke else (25_600, 256)
    options = {"C": 4, "N": 1} if smoke else {"C": 16, "N": 5}
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (images,), generator=gen)
    data = DeviceTensorDataset(
        "random",
        10,
        x,
        y,
        x[:10_000],
        y[:10_000],
        device,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        crop_padding=4,
        flip=True,
    )
    sgd = SgdConfig(lr=0.1)

    def network() -> nn.Module:
        torch.manual_seed(0)
        return build(NetworkSpec("nb201", LARGEST, 10, 32, options))

    ours = prepare_model(network(), device)
    generator = make_generator(0)
    warm = train(ours, data, TrainOptions(epochs=1, batch_size=batch, sgd=sgd), generator)  # cudnn autotune
    timed = train(ours, data, TrainOptions(epochs=2, batch_size=batch, sgd=sgd), generator)
    eval_s = _timed(device, lambda: evaluate(ours, data, batch_size=1024))

    plain = network().to(device)
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def minimal_epoch() -> None:
        for xb, yb in data.train_batches(batch, make_generator(1)):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(plain(xb), yb).backward()
            nn.utils.clip_grad_norm_(plain.parameters(), 5.0)
            optimizer.step()

    minimal_epoch()
    minimal_s = _timed(device, minimal_epoch)
    return {
        "network": f"nb201 {LARGEST} {options}",
        "params": sum(p.numel() for p in ours.parameters()),
        "batch": batch,
        "images_per_epoch": images,
        "warmup_epoch_s": warm.seconds,
        "train_images_per_s": 2 * images / timed.seconds,
        "minimal_fp32_images_per_s": images / minimal_s,
        "eval_images_per_s": data.test_size / eval_s,
        "max_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU only, tiny sizes")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --smoke to check the script on a CPU")
    device = torch.device("cpu" if args.smoke else "cuda")
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "consistency": consistency(device, args.smoke),
        "throughput": throughput(device, args.smoke),
    }
    summary["seconds"] = time.perf_counter() - started
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
