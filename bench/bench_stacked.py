"""K architectures trained one after another vs as one stacked network, on the CPU.

    python -m bench.bench_stacked [--k 1,2,4,8] [--C 16] [--N 1] [--images 1024] [--batch 128]
        [--repeats 2] [--threads 1] [--out bench/results/stacked.md]

Same architectures (the first of the FEAR paper's NB201 list that stack together), one seed, one
epoch of random uint8 images with crop+flip through ``worker.training.train``; repeats interleaved so
machine load hits every variant alike, best repeat counts. Three variants: each network alone
(sequential), the exact stack (bitwise the same result; checked in the run) and the grouped stack
(the GPU path). The CPU is compute-bound on these convolutions, so stacking is not expected to pay
here; the point on a GPU is the kernel count (``bench/gpu_check.py``'s ``stacked`` section).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from app.catalog.base import SgdOptions
from app.genotypes import nb201 as nb201_genotype
from bench.experiments import fear_arch_ids
from worker.data.device_dataset import DeviceTensorDataset
from worker.spaces import nb201
from worker.spaces.nb201 import CellNetwork
from worker.spaces.nb201_stacked import StackedNB201, stack_key
from worker.training import TrainOptions, make_generator, train

SEED = 0


def architectures(k: int) -> list[str]:
    """The first ``k`` of the FEAR paper's list that share a stack key (no skip on edge 0->1)."""
    chosen = []
    for index in fear_arch_ids():
        ops = nb201_genotype.ops_at(index)
        if not stack_key(ops):
            chosen.append(nb201_genotype.to_string(ops))
        if len(chosen) == k:
            return chosen
    raise ValueError(f"fewer than {k} architectures")


def networks(genotypes: list[str], C: int, N: int) -> list[CellNetwork]:
    built = []
    for genotype in genotypes:
        torch.manual_seed(SEED)
        built.append(nb201.build(genotype, 10, {"C": C, "N": N}))
    return built


def data(images: int) -> DeviceTensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 3, 32, 32), generator=gen, dtype=torch.uint8)
    y = torch.randint(10, (images,), generator=gen)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    cpu = torch.device("cpu")
    return DeviceTensorDataset(
        "random", 10, x, y, x[:64], y[:64], cpu, mean=mean, std=std, crop_padding=4, flip=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", default="1,2,4,8", help="comma-separated stack sizes")
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=1)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/stacked.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = data(args.images)
    options = TrainOptions(
        epochs=1,
        batch_size=args.batch,
        sgd=SgdOptions(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, grad_clip=5.0),
        train_size=args.images,
    )
    rows = []
    for k in (int(v) for v in args.k.split(",")):
        genotypes = architectures(k)

        def alone(genotypes: list[str] = genotypes) -> list[CellNetwork]:
            nets = networks(genotypes, args.C, args.N)
            for net in nets:
                train(net, dataset, options, make_generator(SEED))
            return nets

        def stacked(grouped: bool, genotypes: list[str] = genotypes) -> list[CellNetwork]:
            stack = StackedNB201(networks(genotypes, args.C, args.N), grouped=grouped)
            train(stack, dataset, options, make_generator(SEED))
            return [stack.copy_into(i, net) for i, net in enumerate(networks(genotypes, args.C, args.N))]

        variants: dict[str, Callable[[], list[CellNetwork]]] = {
            "alone": alone,
            "exact": lambda: stacked(False),
            "grouped": lambda: stacked(True),
        }
        best = dict.fromkeys(variants, float("inf"))
        results: dict[str, list[CellNetwork]] = {}
        for _ in range(args.repeats):
            for name, run in variants.items():
                start = time.perf_counter()
                results[name] = run()
                best[name] = min(best[name], time.perf_counter() - start)
        bitwise = all(
            all(torch.equal(a.state_dict()[n], b.state_dict()[n]) for n in a.state_dict())
            for a, b in zip(results["alone"], results["exact"], strict=True)
        )
        rows.append((k, best, bitwise))
        print(k, {n: round(v, 2) for n, v in best.items()}, "exact == alone:", bitwise, flush=True)
    command = " ".join(["python -m bench.bench_stacked", *(sys.argv[1:] if argv is None else argv)])
    lines = [
        "# Stacked training on the CPU (`python -m bench.bench_stacked`)",
        "",
        f"`{command}` — NB201 C={args.C} N={args.N}, "
        f"{args.images} images, batch {args.batch}, {args.threads} torch thread(s), best of {args.repeats}",
        "",
        "| K | alone, s | exact stack, s | grouped stack, s | speed-up, exact | speed-up, grouped "
        "| exact bitwise |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for k, best, bitwise in rows:
        lines.append(
            f"| {k} | {best['alone']:.2f} | {best['exact']:.2f} | {best['grouped']:.2f} | "
            f"{best['alone'] / best['exact']:.2f}× | {best['alone'] / best['grouped']:.2f}× | "
            f"{'yes' if bitwise else 'NO'} |"
        )
    lines += [
        "",
        "speed-up = the K networks trained one after another (s) / the stack (s); > 1: the stack is faster.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
