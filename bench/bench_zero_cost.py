"""Zero-cost measures: all eleven together per architecture (``run_zero_cost``: one build, one batch
per size, a restored copy of the initial weights per measure, one shared gradient pass for
grad_norm/snip/plain/fisher) vs each measure computed separately (a ``run_zero_cost`` call per
measure: rebuild the network and reload the batch every time), on NB201 networks on the CPU.

    python -m bench.bench_zero_cost [--indices 0 1 15624] [--C 16] [--N 5] [--repeats 2] [--threads 1]

Also times the three ways to hand a measure a fresh copy of the initial network (deepcopy of the
module, load_state_dict, in-place copy of the saved tensors) on the first architecture.

Data: random uint8 CIFAR-sized images (50,000 train) in the worker's real device dataset, so
``fixed_batch`` costs what it costs in the service; measure times do not depend on pixel values.
Separate and together runs alternate per architecture so machine load hits both alike; the fastest
of ``--repeats`` counts. One torch thread by default: with two threads on a shared 2-core machine a
single descheduled thread stalls every matrix product and the times scatter by 2x.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch

from app.catalog.datasets import get_dataset
from app.catalog.zero_cost import CONFIGS
from app.genotypes import nb201 as nb201_genotype
from bench.context import OfflineRunMixin
from worker.data.base import DataRequest
from worker.data.device_dataset import build_device_dataset
from worker.data.raw import RawSplits
from worker.methods.base import EvalRequest
from worker.methods.zero_cost import measures, run_zero_cost
from worker.methods.zero_cost.state import InitialState
from worker.spaces import build
from worker.spaces.base import NetworkSpec


class BenchContext(OfflineRunMixin):
    """The RunContext a worker process would give: one cached device dataset, progress ignored."""

    def __init__(self, train_images: int = 50_000) -> None:
        self.device = torch.device("cpu")
        g = torch.Generator().manual_seed(0)
        raw = RawSplits(
            train_x=torch.randint(0, 256, (train_images, 3, 32, 32), dtype=torch.uint8, generator=g),
            train_y=torch.randint(0, 10, (train_images,), generator=g),
            test_x=torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8, generator=g),
            test_y=torch.randint(0, 10, (100,), generator=g),
            source="random",
        )
        self._dataset = build_device_dataset(raw, get_dataset("cifar10"), DataRequest("cifar10"), self.device)

    def dataset(self, dataset: str, data_config: dict[str, Any]):
        return self._dataset


def make_requests(genotype: str, network: dict[str, int]) -> list[EvalRequest]:
    out = []
    for i, name in enumerate(measures()):
        config = CONFIGS[name].model_validate({"network": network}).model_dump(mode="json")
        out.append(EvalRequest(i, name, "nb201", genotype, "cifar10", 0, config))
    return out


def time_fresh_copies(genotype: str, network: dict[str, int], repeats: int = 20) -> dict[str, float]:
    """Seconds per fresh copy of the initial network, three ways."""
    torch.manual_seed(0)
    model = build(NetworkSpec("nb201", genotype, 10, 32, network)).train()
    pristine = copy.deepcopy(model)
    saved = copy.deepcopy(model.state_dict())
    state = InitialState(model)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    return {
        "deepcopy": best(lambda: copy.deepcopy(pristine)),
        "load_state_dict": best(lambda: model.load_state_dict(saved)),
        "in-place copy (InitialState)": best(state.restore),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indices", type=int, nargs="+", default=[0, 1, 15624])
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the fastest counts")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    network = {"C": args.C, "N": args.N}
    ctx = BenchContext()
    genotypes = {i: nb201_genotype.to_string(nb201_genotype.ops_at(i)) for i in args.indices}

    # Warm-up (allocator, kernels) on a small network so the first timed architecture is not penalised.
    run_zero_cost(make_requests(genotypes[args.indices[0]], {"C": 4, "N": 1}), ctx)

    rows = []
    per_measure: dict[str, list[float]] = {name: [] for name in measures()}
    for index, genotype in genotypes.items():
        requests = make_requests(genotype, network)
        together_wall, together_cpu, separate_wall, separate_cpu = [], [], [], []
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            together = run_zero_cost(requests, ctx)
            together_wall.append(time.perf_counter() - wall)
            together_cpu.append(time.process_time() - cpu)
            wall, cpu = time.perf_counter(), time.process_time()
            alone = [run_zero_cost([request], ctx)[0] for request in requests]
            separate_wall.append(time.perf_counter() - wall)
            separate_cpu.append(time.process_time() - cpu)
            for a, b in zip(together, alone, strict=True):
                assert repr(a.score) == repr(b.score), (index, a.score, b.score)
            for name, result in zip(measures(), together, strict=True):
                per_measure[name].append(result.cost_s)
        rows.append((index, min(together_wall), min(separate_wall), min(together_cpu), min(separate_cpu)))

    print(f"NB201 C={args.C} N={args.N}, CIFAR-sized batch, CPU ({torch.get_num_threads()} threads)\n")
    print("Wall-clock and process CPU seconds (CPU time is what to compare on a shared, loaded machine).\n")
    print("| index | together wall | separately wall | together CPU | separately CPU | ratio (CPU) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for index, tw, sw, tc, sc in rows:
        print(f"| {index} | {tw:.1f} | {sw:.1f} | {tc:.1f} | {sc:.1f} | {sc / tc:.2f} |")
    totals = [sum(r[k] for r in rows) for k in range(1, 5)]
    print(
        f"| all | {totals[0]:.1f} | {totals[1]:.1f} | {totals[2]:.1f} | {totals[3]:.1f} "
        f"| {totals[3] / totals[2]:.2f} |"
    )

    print("\n| measure | mean cost_s per architecture (wall) |")
    print("|---|---:|")
    for name, costs in per_measure.items():
        print(f"| {name} | {sum(costs) / len(costs):.3f} |")

    copies = time_fresh_copies(genotypes[args.indices[0]], network)
    print(f"\nFresh copy of the initial network (index {args.indices[0]}, best of 20):\n")
    print("| method | ms |")
    print("|---|---:|")
    for name, seconds in copies.items():
        print(f"| {name} | {seconds * 1000:.2f} |")


if __name__ == "__main__":
    main()
