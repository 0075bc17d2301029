"""Regularised (aging) evolution over NAS-Bench-201 (Real et al., 2019) through FastArchRank.

    python examples/regularized_evolution.py --url http://127.0.0.1:8000 --population 20 \
        --sample-size 5 --cycles 100 --method fear --preset paper --dataset cifar10

A population of random cells is evaluated; then each cycle samples ``--sample-size`` members, mutates
one edge of the fittest of them, evaluates the child, adds it and retires the oldest member. Prints
the best cell ever evaluated and the total evaluation cost.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
from dataclasses import dataclass

from fastarchrank import Client, Result, fitness
from fastarchrank.nb201 import mutate, random_genotype


@dataclass(frozen=True)
class EvolutionOutcome:
    best: Result | None
    evaluated: int
    total_cost_s: float
    history: list[Result]


def _key(result: Result) -> float:
    value = fitness(result)
    return value if value is not None else float("-inf")


def regularized_evolution(
    client: Client,
    *,
    population_size: int,
    sample_size: int,
    cycles: int,
    dataset: str,
    method: str,
    preset: str | None = None,
    ratio_to_fastest: float | None = None,
    children_per_round: int = 1,
    seed: int = 0,
) -> EvolutionOutcome:
    if not 1 <= sample_size <= population_size:
        raise ValueError("sample size must be between 1 and the population size")
    rng = random.Random(seed)
    ev = client.evaluator(
        space="nb201", dataset=dataset, method=method, preset=preset, ratio_to_fastest=ratio_to_fastest
    )
    population: collections.deque[Result] = collections.deque()
    history: list[Result] = []
    for result in ev.evaluate([random_genotype(rng) for _ in range(population_size)]):
        population.append(result)
        history.append(result)
    done = 0
    while done < cycles:
        # Several children per round keep a multi-worker service busy; 1 is the paper's loop.
        k = min(children_per_round, cycles - done)
        children = []
        for _ in range(k):
            parent = max(rng.sample(list(population), sample_size), key=_key)
            children.append(mutate(parent.canonical, rng))
        for child in ev.evaluate(children):
            population.append(child)
            history.append(child)
            population.popleft()
        done += k
    scored = [r for r in history if fitness(r) is not None]
    best = max(scored, key=_key) if scored else None
    return EvolutionOutcome(
        best=best, evaluated=ev.evaluations, total_cost_s=ev.total_cost_s, history=history
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("FASTARCHRANK_URL", "http://127.0.0.1:8000"))
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--sample-size", type=int, default=3)
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--children-per-round", type=int, default=1)
    p.add_argument("--dataset", default="synthetic_cifar10")
    p.add_argument("--method", default="synflow")
    p.add_argument("--preset", default=None)
    p.add_argument("--ratio-to-fastest", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with Client(args.url) as client:
        out = regularized_evolution(
            client,
            population_size=args.population,
            sample_size=args.sample_size,
            cycles=args.cycles,
            dataset=args.dataset,
            method=args.method,
            preset=args.preset,
            ratio_to_fastest=args.ratio_to_fastest,
            children_per_round=args.children_per_round,
            seed=args.seed,
        )
    if out.best is None:
        print(f"no architecture got a usable {args.method} score ({out.evaluated} evaluated)")
    else:
        print(f"best architecture: {out.best.canonical}")
        print(f"{args.method} score: {out.best.score}")
    print(f"evaluated {out.evaluated} architectures; total evaluation cost {out.total_cost_s:.2f} s")
    return 0 if out.best is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
