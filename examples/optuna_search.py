"""Optuna ask/tell over NAS-Bench-201 through FastArchRank (needs ``pip install optuna``).

    python examples/optuna_search.py --url http://127.0.0.1:8000 --trials 30 --method synflow

Six categorical parameters (one per cell edge) -> cell string -> evaluate -> tell. Trials are asked
in rounds of ``--per-round`` and evaluated together, so the service works on several at once.
"""

from __future__ import annotations

import argparse
import os

from fastarchrank import Client, fitness
from fastarchrank.nb201 import EDGES, OPS, genotype


def optuna_search(
    client: Client, *, trials: int, dataset: str, method: str, preset: str | None = None,
    per_round: int = 5, seed: int = 0,
) -> tuple[str | None, float | None, float]:
    import optuna

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    ev = client.evaluator(space="nb201", dataset=dataset, method=method, preset=preset)
    asked = 0
    while asked < trials:
        batch = [study.ask() for _ in range(min(per_round, trials - asked))]
        asked += len(batch)
        cells = [
            genotype([t.suggest_categorical(f"edge_{target}_{source}", OPS) for target, source in EDGES])
            for t in batch
        ]
        for trial, result in zip(batch, ev.evaluate(cells), strict=True):
            value = fitness(result)
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None, None, ev.total_cost_s
    best = study.best_trial
    cell = genotype([best.params[f"edge_{t}_{s}"] for t, s in EDGES])
    return cell, best.value, ev.total_cost_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("FASTARCHRANK_URL", "http://127.0.0.1:8000"))
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--per-round", type=int, default=5)
    p.add_argument("--dataset", default="synthetic_cifar10")
    p.add_argument("--method", default="synflow")
    p.add_argument("--preset", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with Client(args.url) as client:
        cell, value, cost = optuna_search(
            client, trials=args.trials, dataset=args.dataset, method=args.method, preset=args.preset,
            per_round=args.per_round, seed=args.seed,
        )
    print(f"best architecture: {cell}" if cell else "no trial completed")
    print(f"best value: {value}; total evaluation cost {cost:.2f} s")
    return 0 if cell else 1


if __name__ == "__main__":
    raise SystemExit(main())
