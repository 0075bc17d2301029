"""Random search over NAS-Bench-201 through a FastArchRank service.

    python examples/random_search.py --url http://127.0.0.1:8000 --n 50 --method fear --preset paper \
        --dataset cifar10 --ratio-to-fastest 4

Samples ``--n`` cells uniformly, evaluates them with one method (in rounds of ``--per-round``, all
rounds one search so FEAR's ratio-to-fastest cap spans them), and prints the best cell and the total
evaluation cost the service spent.
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass

from fastarchrank import Client, Result, fitness
from fastarchrank.nb201 import random_genotype


@dataclass(frozen=True)
class SearchOutcome:
    best: Result | None
    evaluated: int
    total_cost_s: float


def random_search(
    client: Client,
    *,
    n: int,
    dataset: str,
    method: str,
    preset: str | None = None,
    ratio_to_fastest: float | None = None,
    per_round: int = 10,
    seed: int = 0,
) -> SearchOutcome:
    rng = random.Random(seed)
    ev = client.evaluator(
        space="nb201", dataset=dataset, method=method, preset=preset, ratio_to_fastest=ratio_to_fastest
    )
    best: Result | None = None
    proposed = [random_genotype(rng) for _ in range(n)]
    for start in range(0, n, per_round):
        for result in ev.as_completed(proposed[start : start + per_round]):
            score = fitness(result)
            if score is not None and (best is None or score > (fitness(best) or float("-inf"))):
                best = result
    return SearchOutcome(best=best, evaluated=ev.evaluations, total_cost_s=ev.total_cost_s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("FASTARCHRANK_URL", "http://127.0.0.1:8000"))
    p.add_argument("--n", type=int, default=30, help="cells to sample")
    p.add_argument("--per-round", type=int, default=10, help="cells submitted per batch")
    p.add_argument("--dataset", default="synthetic_cifar10")
    p.add_argument("--method", default="synflow")
    p.add_argument("--preset", default=None)
    p.add_argument("--ratio-to-fastest", type=float, default=None, help="FEAR's search-time cap")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with Client(args.url) as client:
        out = random_search(
            client,
            n=args.n,
            dataset=args.dataset,
            method=args.method,
            preset=args.preset,
            ratio_to_fastest=args.ratio_to_fastest,
            per_round=args.per_round,
            seed=args.seed,
        )
    report(out, args.method)
    return 0 if out.best is not None else 1


def report(out: SearchOutcome, method: str) -> None:
    if out.best is None:
        print(f"no architecture got a usable {method} score ({out.evaluated} evaluated)")
    else:
        print(f"best architecture: {out.best.canonical}")
        print(f"{method} score: {out.best.score}")
    print(f"evaluated {out.evaluated} architectures; total evaluation cost {out.total_cost_s:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
