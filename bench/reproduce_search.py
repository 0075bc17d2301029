"""Random search over NB201 through the service: FEAR with the ratio-to-fastest cap vs shortreg.

    python -m bench.reproduce_search [--quick] [--url URL] [--seeds 0 1 2] [--k 20] [--ratio 4.0]
                                     [--shortreg-epochs 6] [--datasets-dir DIR] [--oracle]
                                     [--pool N [--pool-seed S]]

The seed's second table: for each search seed, K architectures are sampled uniformly from the 15,625
NB201 cells; one batch evaluates them with FEAR (batch option ``ratio_to_fastest``: a candidate whose
stage 1 exceeds ratio x the fastest time-to-threshold seen so far is rejected) and with shortreg at a
fixed epoch budget. Each method picks its best-scored candidate; a second batch trains the picks with
``full`` (the ground truth at the same preset) and the table reports the picked architecture's
accuracy and each method's total evaluation time (sum of cost_s over all K, rejected included).
``--oracle`` trains all K with ``full`` as well, to show the best and the average candidate.

Default scale: CIFAR-10 image folder at the ``cpu`` presets (hours on 2 cores: run it when the
machine is free). ``--quick``: synthetic_cifar10 at the ``tiny`` presets, a few minutes, plumbing only
(its ground truth is at chance). Evaluations are deduplicated across batches, so the ground-truth batch
reuses any pick that was trained before, and shortreg results are shared between seeds that sample the
same architecture; FEAR's are not (the cap makes them depend on their batch).

``--pool N``: draw each search's candidates from the N architectures that ``bench.harness run
--experiment cifar10/cpu --n-archs N --seed S`` drew, and train with that study's seed S. Run against
the study's service (``--url``), every shortreg and ``full`` evaluation is then reused from the study,
so a search costs only its FEAR-with-cap evaluations and ``--oracle`` costs nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastarchrank import Batch, Client, FastArchRankError
from fastarchrank.progress import format_duration

from bench.embedded import REPO_ROOT, EmbeddedService
from bench.experiments import draw_archs
from bench.harness import EXTRACT_HINT, machine_description
from bench.summary import NEAR_CHANCE_POINTS, finite

NB201_SIZE = 15_625
FEAR_ALIAS = "fear-cap"
FULL_ALIAS = "full"


def sample_candidates(k: int, seed: int, pool: Sequence[int] | None = None) -> list[int]:
    """K distinct NB201 indices for one search, drawn with ``random.Random(seed)`` from ``pool``
    (default: every NB201 cell)."""
    population = range(NB201_SIZE) if pool is None else list(pool)
    if not 1 <= k <= len(population):
        raise ValueError(f"--k must be 1..{len(population)} (the candidate pool's size), got {k}")
    return random.Random(seed).sample(population, k)


def best_pick(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The ranking's best row with a rank (done, finite score); None if nothing was ranked."""
    ranked = [r for r in rows if r.get("rank") is not None]
    return min(ranked, key=lambda r: (r["rank"], r["position"])) if ranked else None


def total_cost(rows: Sequence[dict[str, Any]]) -> float:
    """Every evaluation's cost, rejected and unmet ones included: what the search paid."""
    return float(sum(r["cost_s"] for r in rows if finite(r.get("cost_s"))))


def mean_std(given: Sequence[float | None]) -> str:
    values = [float(v) for v in given if v is not None and finite(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def dataset_classes(client: Client, dataset: str) -> int:
    """The dataset's number of classes; fails early (with the fix) if its files are absent."""
    for info in client.datasets():
        if info["name"] == dataset:
            availability = info.get("availability", {})
            if info.get("source") != "generated" and not availability.get("present", False):
                where = availability.get("path")
                raise ValueError(f"dataset {dataset!r} is missing at {where}; {EXTRACT_HINT}")
            return int(info["num_classes"])
    raise ValueError(f"the service does not know dataset {dataset!r}")


class SearchRun:
    def __init__(self, client: Client, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args

    def methods(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "fear",
                "alias": FEAR_ALIAS,
                "preset": self.args.preset,
                **({"config": {"threshold": self.args.fear_threshold}} if self.args.fear_threshold else {}),
            },
            {
                "name": "shortreg",
                "alias": self.shortreg_alias,
                "preset": self.args.preset,
                "config": {"epochs": self.args.shortreg_epochs},
            },
        ]

    @property
    def shortreg_alias(self) -> str:
        return f"shortreg-e{self.args.shortreg_epochs}"

    def _batch(
        self, items: list[int], methods: list[dict[str, Any]], seed: int, options: dict[str, Any]
    ) -> Batch:
        batch = self.client.submit(
            "nb201",
            self.args.dataset,
            methods,
            [{"nb201_index": i, "label": f"nb201-{i}"} for i in items],
            seed=seed,
            options=options,
        )
        batch.wait(progress=True)
        return batch

    def rows(self, batch: Batch, alias: str) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in batch.ranking(alias).items]

    def ground_truth(self, indices: list[int], seed: int) -> dict[int, float | None]:
        """Test accuracy (percent) of ``full`` at the preset for each index (None if it did not finish)."""
        methods = [{"name": "full", "alias": FULL_ALIAS, "preset": self.args.preset}]
        if self.args.full_epochs:
            methods[0]["config"] = {"epochs": self.args.full_epochs}
        batch = self._batch(sorted(set(indices)), methods, seed, {})
        rows = self.rows(batch, FULL_ALIAS)
        return {
            int(r["index"]): (100.0 * r["score"] if r["status"] == "done" and finite(r["score"]) else None)
            for r in rows
        }

    def train_seed(self, search_seed: int) -> int:
        """The batches' seed: the study's when candidates come from its pool (so its evaluations are
        reused), else the search's own."""
        return self.args.pool_seed if self.args.pool else search_seed

    def one_seed(self, seed: int) -> dict[str, Any]:
        pool = draw_archs(self.args.pool, self.args.pool_seed) if self.args.pool else None
        candidates = sample_candidates(self.args.k, seed, pool)
        print(f"seed {seed}: {len(candidates)} candidates", file=sys.stderr, flush=True)
        train_seed = self.train_seed(seed)
        search = self._batch(candidates, self.methods(), train_seed, {"ratio_to_fastest": self.args.ratio})
        result: dict[str, Any] = {
            "seed": seed,
            "search_batch": search.id,
            "candidates": candidates,
            "methods": {},
        }
        picks: dict[str, int] = {}
        for alias in (FEAR_ALIAS, self.shortreg_alias):
            rows = self.rows(search, alias)
            pick = best_pick(rows)
            statuses: dict[str, int] = {}
            for r in rows:
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
            result["methods"][alias] = {
                "pick": pick["index"] if pick else None,
                "pick_score": pick["score"] if pick else None,
                "total_cost_s": total_cost(rows),
                "statuses": statuses,
            }
            if pick:
                picks[alias] = int(pick["index"])
        to_train = list(candidates) if self.args.oracle else list(picks.values())
        truth = self.ground_truth(to_train, train_seed) if to_train else {}
        for entry in result["methods"].values():
            entry["pick_accuracy"] = truth.get(entry["pick"]) if entry["pick"] is not None else None
        if self.args.oracle:
            known = [v for v in truth.values() if v is not None]
            result["oracle_best"] = max(known) if known else None
            result["candidate_mean"] = statistics.mean(known) if known else None
        return result


def pool_text(args: argparse.Namespace) -> str:
    if not args.pool:
        return "uniform over the 15,625 NB201 cells"
    return (
        f"drawn from the {args.pool} FEAR-list architectures of the cifar10/cpu study with seed "
        f"{args.pool_seed}; trained with seed {args.pool_seed}, so shortreg and ground truth are the study's"
    )


def markdown(results: list[dict[str, Any]], args: argparse.Namespace, wall_s: float, num_classes: int) -> str:
    shortreg = f"shortreg-e{args.shortreg_epochs}"
    labels = {
        FEAR_ALIAS: f"FEAR ({args.ratio:g} × fastest)",
        shortreg: f"shortreg ({args.shortreg_epochs} epochs)",
    }
    lines = [
        f"# Random search through the service: FEAR ({args.ratio:g} × fastest) vs shortreg",
        "",
        f"Command: `python -m bench.reproduce_search {' '.join(args.argv)}`  ",
        f"Dataset {args.dataset}, presets `{args.preset}`, {args.k} candidates per search "
        f"({pool_text(args)}), search seeds {', '.join(map(str, args.seeds))}; ground truth = `full` at the "
        f"same preset{f', {args.full_epochs} epochs' if args.full_epochs else ''} "
        "(test accuracy, percent).  ",
        f"Machine: {machine_description()}; date {datetime.now(UTC):%Y-%m-%d}; "
        f"wall time {format_duration(wall_s)}.",
        "",
        "| method | best found: ground-truth accuracy (%) | total evaluation time (s) "
        "| rejected/unmet per search |",
        "|---|---:|---:|---:|",
    ]
    times: dict[str, list[float]] = {}
    for alias, label in labels.items():
        accs = [r["methods"][alias]["pick_accuracy"] for r in results]
        costs = [r["methods"][alias]["total_cost_s"] for r in results]
        times[alias] = costs
        dropped = [
            r["methods"][alias]["statuses"].get("rejected", 0)
            + r["methods"][alias]["statuses"].get("unmet", 0)
            for r in results
        ]
        lines.append(
            f"| {label} | {mean_std(accs)} | {mean_std(costs)} | {mean_std([float(d) for d in dropped])} |"
        )
    if args.oracle:
        lines.append(f"| best candidate (oracle) | {mean_std([r.get('oracle_best') for r in results])} | | |")
        lines.append(f"| average candidate | {mean_std([r.get('candidate_mean') for r in results])} | | |")
    accuracies = [
        e["pick_accuracy"] for r in results for e in r["methods"].values() if finite(e.get("pick_accuracy"))
    ]
    chance = 100.0 / num_classes
    if not accuracies or max(accuracies) - chance < NEAR_CHANCE_POINTS:
        lines += [
            "",
            f"> **WARNING: every picked architecture is within {NEAR_CHANCE_POINTS:.0f} points of chance "
            f"({chance:.0f}%): this ground truth cannot tell the methods apart.**",
        ]
    if args.quick:
        lines += [
            "",
            "Quick mode: tiny networks on a few hundred synthetic images, whose ground truth sits at "
            "chance level (datasets.md). This table checks the plumbing, not the method.",
        ]
    fear_total = sum(times[FEAR_ALIAS])
    ratio = sum(times[shortreg]) / fear_total if fear_total else None
    lines += [
        "",
        f"Time ratio shortreg / FEAR (totals over all seeds, one run): "
        f"**{f'{ratio:.2f}x' if ratio is not None else 'n/a'}**. Mean ± sample std over the seeds.",
        "",
        "| seed | FEAR pick | its accuracy | FEAR time (s) | shortreg pick | its accuracy "
        "| shortreg time (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        f, s = r["methods"][FEAR_ALIAS], r["methods"][shortreg]
        lines.append(
            f"| {r['seed']} | {f['pick']} | {mean_std([f['pick_accuracy']])} | {f['total_cost_s']:.1f} | "
            f"{s['pick']} | {mean_std([s['pick_accuracy']])} | {s['total_cost_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="synthetic tiny: minutes, plumbing only")
    parser.add_argument("--url", default=None, help="a running service; default: start an embedded one")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="search seeds (default 0 1 2)")
    parser.add_argument("--k", type=int, default=None, help="candidates per search (default 20; quick 4)")
    parser.add_argument("--ratio", type=float, default=4.0, help="FEAR's ratio to the fastest stage 1")
    parser.add_argument(
        "--shortreg-epochs", type=int, default=None, help="shortreg budget (default 6; quick 2)"
    )
    parser.add_argument(
        "--full-epochs",
        type=int,
        default=None,
        help="ground-truth epochs (default 12 as in cifar10/cpu; quick: the tiny preset's)",
    )
    parser.add_argument(
        "--fear-threshold",
        type=float,
        default=None,
        help="FEAR's stage-1 threshold (default: the preset's; the recorded CIFAR-10 search used 0.35)",
    )
    parser.add_argument("--oracle", action="store_true", help="also train every candidate with full")
    parser.add_argument(
        "--pool",
        type=int,
        default=None,
        metavar="N",
        help="draw candidates from the N architectures of the cifar10/cpu study (and train with its seed)",
    )
    parser.add_argument("--pool-seed", type=int, default=0, help="the study's --seed (with --pool)")
    parser.add_argument("--datasets-dir", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=None, help="embedded service data directory")
    parser.add_argument("--workers", type=int, default=1, help="embedded worker processes")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per embedded worker")
    parser.add_argument("--out", type=Path, default=None, help="Markdown result (default bench/results/...)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The client reports progress through logging when stderr is not a terminal.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    args.dataset = "synthetic_cifar10" if args.quick else "cifar10_folder"
    args.preset = "tiny" if args.quick else "cpu"
    args.seeds = args.seeds or [0, 1, 2]
    args.k = args.k or (4 if args.quick else 20)
    args.shortreg_epochs = args.shortreg_epochs or (2 if args.quick else 6)
    args.full_epochs = args.full_epochs or (None if args.quick else 12)
    pool_size = args.pool or NB201_SIZE
    if not 1 <= args.k <= pool_size:
        print(f"error: --k must be 1..{pool_size} (the candidate pool's size), got {args.k}", file=sys.stderr)
        return 2
    name = "reproduce_search_quick" if args.quick else "reproduce_search"
    out = args.out or REPO_ROOT / "bench" / "results" / f"{name}.md"
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            url = args.url
            if url is None:
                data_dir = args.data_dir
                if data_dir is None:
                    # A private service for this run only: its database is not needed afterwards.
                    data_dir = Path(tempfile.mkdtemp(prefix=f"fastarchrank-{name}-"))
                    stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
                service = EmbeddedService(
                    data_dir,
                    datasets_dir=args.datasets_dir,
                    env={"FASTARCHRANK_TORCH_THREADS": str(args.torch_threads)},
                    workers=args.workers,
                )
                url = stack.enter_context(service)
            client = stack.enter_context(Client(url, poll_s=2.0))
            num_classes = dataset_classes(client, args.dataset)
            run = SearchRun(client, args)
            results = [run.one_seed(seed) for seed in args.seeds]
    except (FastArchRankError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = markdown(results, args, time.monotonic() - started, num_classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
