"""What the service costs on top of the work: end-to-end overhead and API latency under load.

    python -m bench.service_overhead [--n-archs 100] [--measures params synflow] [--preset tiny]
                                     [--stacks embedded postgres] [--clients 16] [--requests 25]
                                     [--skip-latency] [--out bench/results/service_overhead.md]

(a) Overhead: one batch of zero-cost evaluations (default params + synflow at the ``tiny`` preset on
    100 NB201 architectures) posted to a running service and timed from POST until the batch reports
    done (API + broker + worker + database), against the same evaluations run in this process through
    the worker's own code (``worker.methods.registry.run_zero_cost`` with a context that loads data the
    way the worker does). Both sides are warm (the worker's dataset is loaded by a warm-up batch of
    other architectures; the in-process side runs the same warm-up) and use the same torch threads.
    Stacks: ``embedded`` (SQLite + filesystem broker, what `fastarchrank serve` runs) and ``postgres``
    (Postgres + Redis, the production shape; needs both on 127.0.0.1).
(b) Latency: 16 client threads (one httpx client each) hammer GET /v1/batches/{id}/ranking and then
    POST /v1/batches against the API alone (``--no-worker``) on a scratch Postgres database holding
    >= 10,000 stored evaluations: one batch of 1000 architectures x 11 zero-cost measures, whose
    evaluations are then marked done with random scores by SQL (this measures the API, not the
    worker). Each POST is a new 20-architecture, 2-method batch.
The scratch database, its Redis queue and the temporary data directories are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.api_client import ServiceClient
from bench.embedded import REPO_ROOT, EmbeddedService, clean_env
from bench.experiments import ZERO_COST_MEASURES, draw_archs, fear_arch_ids
from bench.harness import as_utc, machine_description

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
DATASET = "synthetic_cifar10"
WARMUP_ARCHS = 5
# Work per task decides the ratio: a light workload shows the fixed cost per task, a full one what a
# real zero-cost batch pays. Distinct seeds keep the service from reusing one workload's results.
WORKLOADS: dict[str, tuple[tuple[str, ...], int]] = {
    "light": (("params", "synflow"), 0),
    "all": (ZERO_COST_MEASURES, 100),
}


# ---------------------------------------------------------------------------------------------
# Scratch Postgres + private Redis queue


@contextlib.contextmanager
def scratch_postgres(data_dir: Path) -> Iterator[dict[str, str]]:
    """A fresh, migrated database and a private queue name; dropped and deleted on exit."""
    import redis
    from sqlalchemy import create_engine, text

    token = uuid.uuid4().hex[:10]
    name = f"fastarchrank_bench_{token}"
    queue = f"fastarchrank-bench-{token}"
    env = {
        "FASTARCHRANK_DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + f"/{name}",
        "FASTARCHRANK_BROKER_URL": REDIS_URL,
        "FASTARCHRANK_QUEUE": queue,
        "FASTARCHRANK_DATA_DIR": str(data_dir),
    }
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"],
            env=clean_env(env),
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        yield env
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        client = redis.Redis.from_url(REDIS_URL)
        try:
            # The token makes these names unique to this run: only our keys can match.
            for key in client.scan_iter(match=f"*{queue}*"):
                client.delete(key)
        finally:
            client.close()


# ---------------------------------------------------------------------------------------------
# (a) overhead


def _body(indices: Sequence[int], measures: Sequence[str], preset: str, seed: int) -> dict[str, Any]:
    return {
        "space": "nb201",
        "dataset": DATASET,
        "methods": [{"name": m, "preset": preset} for m in measures],
        "seed": seed,
        "items": [{"nb201_index": i} for i in indices],
    }


def _wait(client: ServiceClient, batch_id: str, timeout_s: float = 1800.0) -> dict[str, Any]:
    # A slow poll on purpose: each status call costs the API CPU that the worker would miss on
    # 2 cores. The end of the batch is read from the evaluations' finished_at instead.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.status(batch_id)
        if status["status"] == "done":
            return status
        time.sleep(1.0)
    raise TimeoutError(f"batch {batch_id} did not finish within {timeout_s:.0f} s")


def through_service(
    url: str, warmup: list[int], measured: list[int], measures: Sequence[str], preset: str, seed: int
) -> dict[str, Any]:
    with ServiceClient(url) as client:
        warm = client.submit(_body(warmup, measures, preset, seed=seed + 1))
        _wait(client, warm["batch_id"])
        posted = datetime.now(UTC)
        created = client.submit(_body(measured, measures, preset, seed=seed))
        status = _wait(client, created["batch_id"])
        rows = client.export_json(created["batch_id"])["rows"]
    costs = [r["cost_s"] for r in rows if r.get("cost_s") is not None]
    # Same machine, same clock: from just before the POST to the last evaluation's commit.
    finished = max(as_utc(r["finished_at"]) for r in rows)
    return {
        "wall_s": (finished - posted).total_seconds(),
        "counts": {k: v for k, v in status["counts"].items() if v},
        "new": created["evaluations"]["new"],
        "sum_cost_s": float(sum(costs)),
    }


def in_process(
    datasets_dir: Path,
    warmup: list[int],
    measured: list[int],
    measures: Sequence[str],
    preset: str,
    threads: int,
    seed: int,
) -> dict[str, Any]:
    """The same evaluations through the worker's code in this process (no API, queue or database)."""
    os.environ["FASTARCHRANK_DATASETS_DIR"] = str(datasets_dir)
    os.environ["FASTARCHRANK_DATA_DIR"] = str(datasets_dir.parent)
    import torch

    from app.catalog.methods import resolve
    from app.genotypes import get_space
    from bench.context import OfflineRunMixin
    from worker.engine import load_data
    from worker.methods.base import EvalRequest
    from worker.methods.registry import run_zero_cost

    torch.set_num_threads(threads)
    space = get_space("nb201")
    configs = {m: resolve(m, preset, {}, "nb201", DATASET, ["methods", 0]).config for m in measures}

    class LocalContext(OfflineRunMixin):
        device = torch.device("cpu")

        def dataset(self, dataset: str, data_config: dict[str, Any]) -> Any:
            return load_data(dataset, data_config)

    ctx = LocalContext()

    def run(indices: list[int], seed: int) -> float:
        total = 0.0
        for n, index in enumerate(indices):
            genotype = space.from_index(index).canonical
            requests = [
                EvalRequest(n * len(measures) + j, m, "nb201", genotype, DATASET, seed, configs[m])
                for j, m in enumerate(measures)
            ]
            total += sum(r.cost_s for r in run_zero_cost(requests, ctx))
        return total

    run(warmup, seed=seed + 1)
    start = time.perf_counter()
    sum_cost = run(measured, seed=seed)
    return {"wall_s": time.perf_counter() - start, "sum_cost_s": sum_cost}


def overhead(
    args: argparse.Namespace, stack: str, env: dict[str, str], datasets_dir: Path
) -> list[dict[str, Any]]:
    """Each workload through one service of this stack, then in process right after (same load)."""
    ids = list(fear_arch_ids())
    measured = draw_archs(args.n_archs, seed=0)
    warmup = [i for i in ids if i not in set(measured)][:WARMUP_ARCHS]
    threads_env = {"FASTARCHRANK_TORCH_THREADS": str(args.torch_threads), **env}
    service = EmbeddedService(Path(env["FASTARCHRANK_DATA_DIR"]), datasets_dir=datasets_dir, env=threads_env)
    results = []
    with service as url:
        for workload in args.workloads:
            measures, base_seed = WORKLOADS[workload]
            served_runs, local_runs = [], []
            # Alternate the two sides and keep the fastest of each: on a shared machine the load
            # changes by the minute, and the fastest run is the one least disturbed by it.
            for repeat in range(args.repeats):
                seed = base_seed + 10 * repeat  # a fresh seed per repeat: no reuse of stored results
                served_runs.append(through_service(url, warmup, measured, measures, args.preset, seed))
                local_runs.append(
                    in_process(
                        datasets_dir, warmup, measured, measures, args.preset, args.torch_threads, seed
                    )
                )
            served = min(served_runs, key=lambda r: r["wall_s"])
            local = min(local_runs, key=lambda r: r["wall_s"])
            ratio = served["wall_s"] / local["wall_s"]
            print(f"{stack}, {workload}: ratio {ratio:.2f}", file=sys.stderr, flush=True)
            results.append(
                {
                    "stack": stack,
                    "workload": workload,
                    "measures": list(measures),
                    "service": served,
                    "local": local,
                    "ratio": ratio,
                    "service_runs_s": [r["wall_s"] for r in served_runs],
                    "local_runs_s": [r["wall_s"] for r in local_runs],
                }
            )
    return results


# ---------------------------------------------------------------------------------------------
# (b) latency


def seed_evaluations(url: str, database_url: str) -> tuple[str, int]:
    """One batch of the FEAR list's 1000 architectures x every zero-cost measure, then every stored
    evaluation marked done with a random score (by SQL: the worker is not what is measured here)."""
    from sqlalchemy import create_engine, func, update

    from app.models import Evaluation

    with ServiceClient(url, timeout_s=600) as client:
        created = client.submit(_body(list(fear_arch_ids()), ZERO_COST_MEASURES, "tiny", seed=0))
    engine = create_engine(database_url)
    with engine.begin() as conn:
        stored = conn.execute(
            update(Evaluation).values(
                status="done",
                score=func.random(),
                score_kind="finite",
                finite=True,
                cost_s=func.random(),
                attempts=1,
            )
        ).rowcount
    engine.dispose()
    return created["batch_id"], int(stored)


def client_run(url: str, worker: int, requests: int, call: Any, ready: Any) -> tuple[list[float], list[str]]:
    """One client: ``requests`` timed calls after ``ready.wait()``; (latencies in s, error labels)."""
    latencies: list[float] = []
    errors: list[str] = []
    rng = random.Random(worker)
    with httpx.Client(base_url=url, timeout=120) as http:
        ready.wait()
        for _ in range(requests):
            start = time.perf_counter()
            try:
                resp = call(http, rng)
                ok = resp.status_code in (200, 201)
            except httpx.HTTPError as exc:
                ok, resp = False, exc
            elapsed = time.perf_counter() - start
            if ok:
                latencies.append(elapsed)
            else:
                errors.append(str(getattr(resp, "status_code", resp)))
    return latencies, errors


def latency_stats(latencies: list[float], errors: list[str], wall: float) -> dict[str, Any]:
    arr = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "p50_ms": float(np.percentile(arr, 50)) if arr.size else None,
        "p99_ms": float(np.percentile(arr, 99)) if arr.size else None,
        "mean_ms": float(arr.mean()) if arr.size else None,
        "throughput_rps": len(latencies) / wall if wall else None,
    }


def _hammer(url: str, clients: int, requests: int, call: Any) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client_loop(worker: int) -> None:
        lat, err = client_run(url, worker, requests, call, barrier)
        with lock:
            latencies.extend(lat)
            errors.extend(err)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latency_stats(latencies, errors, time.perf_counter() - start)


def latency(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    data_dir = Path(env["FASTARCHRANK_DATA_DIR"])
    # A second API process on the same database with the ranking cache off: the cache's gain is
    # measured in the same run, on the same rows.
    uncached_env = {
        **env,
        "FASTARCHRANK_DATA_DIR": str(data_dir / "uncached"),
        "FASTARCHRANK_RANKING_CACHE_ROWS": "0",
    }
    with (
        EmbeddedService(data_dir, env=env, workers=0) as url,
        EmbeddedService(data_dir / "uncached", env=uncached_env, workers=0) as uncached_url,
    ):
        batch_id, stored = seed_evaluations(url, env["FASTARCHRANK_DATABASE_URL"])

        def get_ranking(http: httpx.Client, rng: random.Random) -> httpx.Response:
            method = rng.choice(ZERO_COST_MEASURES)
            return http.get(f"/v1/batches/{batch_id}/ranking", params={"method": method, "limit": 100})

        def post_batch(http: httpx.Client, rng: random.Random) -> httpx.Response:
            body = _body(
                rng.sample(range(15_625), 20), ("params", "synflow"), "tiny", seed=rng.randrange(2**31)
            )
            return http.post("/v1/batches", json=body)

        # A few requests first, so no phase pays for the API's first-use imports (nor the cache's
        # first fill of each method's ranking).
        for warm in (url, uncached_url):
            _hammer(warm, 2, len(ZERO_COST_MEASURES), get_ranking)
        # One client first: the service time of a request, with no queueing in front of it.
        results = {
            "get_ranking_uncached_1": _hammer(uncached_url, 1, args.requests, get_ranking),
            "get_ranking_1": _hammer(url, 1, args.requests, get_ranking),
            "post_batches_1": _hammer(url, 1, args.requests, post_batch),
            "get_ranking_uncached": _hammer(uncached_url, args.clients, args.requests, get_ranking),
            "get_ranking": _hammer(url, args.clients, args.requests, get_ranking),
            "post_batches": _hammer(url, args.clients, args.requests, post_batch),
        }
    return {"stored_evaluations": stored, "batch_items": 1000, **results}


# ---------------------------------------------------------------------------------------------
# report


def _ms(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "n/a"


def markdown(args: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = [
        "# Service overhead and API latency",
        "",
        f"Command: `python -m bench.service_overhead {' '.join(args.argv)}`  ",
        f"Machine: {machine_description()} (shared with other jobs while measured); "
        f"date {datetime.now(UTC):%Y-%m-%d}; torch threads per worker and in process: {args.torch_threads}.",
        "",
    ]
    if results.get("overhead"):
        lines += [
            f"## (a) {args.n_archs} NB201 architectures, zero-cost measures at the `{args.preset}` preset",
            "",
            "| stack | measures | evaluations | through the service (s) | in process (s) | ratio | "
            "all runs, service / in process (s) | overhead per evaluation (ms) |",
            "|---|---|---:|---:|---:|---:|---|---:|",
        ]
        for r in results["overhead"]:
            n_eval = args.n_archs * len(r["measures"])
            per_eval = (r["service"]["wall_s"] - r["local"]["wall_s"]) / n_eval * 1000.0
            runs = (
                ", ".join(f"{v:.2f}" for v in r["service_runs_s"])
                + " / "
                + ", ".join(f"{v:.2f}" for v in r["local_runs_s"])
            )
            label = " + ".join(r["measures"]) if len(r["measures"]) < 4 else f"all {len(r['measures'])}"
            lines.append(
                f"| {r['stack']} | {label} | {n_eval} | {r['service']['wall_s']:.2f} | "
                f"{r['local']['wall_s']:.2f} | "
                f"**{r['ratio']:.2f}x** | {runs} | {per_eval:.1f} |"
            )
        lines += [
            "",
            "Through the service = from just before the POST to the last evaluation's `finished_at` "
            "(same clock); in process = `run_zero_cost` per architecture in one Python process. Target: "
            f"ratio <= 1.1. The fastest of {args.repeats} alternating runs per side counts (the machine "
            "was shared); the zero-cost evaluations of several architectures travel in one task.",
            "",
        ]
    if results.get("latency"):
        lat = results["latency"]
        lines += [
            f"## (b) API latency, {args.clients} concurrent clients, Postgres with "
            f"{lat['stored_evaluations']:,} stored evaluations",
            "",
            "| request | requests | errors | p50 (ms) | p99 (ms) | mean (ms) | throughput (req/s) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        names = {
            "get_ranking_uncached_1": "GET ranking, cache off (1000-item batch, limit 100), 1 client",
            "get_ranking_1": "GET ranking (1000-item batch, limit 100), 1 client",
            "post_batches_1": "POST batches (20 archs x 2 methods), 1 client",
            "get_ranking_uncached": f"GET ranking, cache off, {args.clients} clients",
            "get_ranking": f"GET ranking (1000-item batch, limit 100), {args.clients} clients",
            "post_batches": f"POST batches (20 archs x 2 methods), {args.clients} clients",
        }
        for key, label in names.items():
            if key not in lat:
                continue
            r = lat[key]
            lines.append(
                f"| {label} | {r['requests']} | {r['errors']} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | "
                f"{_ms(r['mean_ms'])} | {r['throughput_rps']:.1f} |"
            )
        lines += [
            "",
            "One API process (`fastarchrank serve --no-worker`, uvicorn, one event loop with FastAPI's "
            'thread pool for the sync endpoints), Redis broker on a private queue. "Cache off" is a '
            "second API process on the same database with `FASTARCHRANK_RANKING_CACHE_ROWS=0`.",
            "",
        ]
        off, on = lat.get("get_ranking_uncached"), lat.get("get_ranking")
        if off and on and off.get("throughput_rps") and on.get("throughput_rps"):
            gain = on["throughput_rps"] / off["throughput_rps"]
            lines += [
                f"Ranking cache, {args.clients} clients: throughput **{gain:.1f}x**, "
                f"p50 {_ms(off['p50_ms'])} -> {_ms(on['p50_ms'])} ms.",
                "",
            ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-archs", type=int, default=100)
    parser.add_argument(
        "--workloads",
        nargs="+",
        default=list(WORKLOADS),
        choices=list(WORKLOADS),
        help="light = params + synflow; all = the 11 zero-cost measures",
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument(
        "--stacks", nargs="*", default=["embedded", "postgres"], choices=["embedded", "postgres"]
    )
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternating runs per side; the fastest counts"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=25, help="requests per client and phase")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "service_overhead.md")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    root = Path(tempfile.mkdtemp(prefix="fastarchrank-overhead-"))
    # One dataset folder for every stack and the in-process run: the synthetic set is generated once.
    datasets_dir = root / "datasets"
    results: dict[str, Any] = {"overhead": []}
    try:
        if "embedded" in args.stacks:
            env = {"FASTARCHRANK_DATA_DIR": str(root / "emb")}
            results["overhead"] += overhead(args, "embedded (SQLite + filesystem broker)", env, datasets_dir)
        if "postgres" in args.stacks:
            with scratch_postgres(root / "pg-a") as env:
                results["overhead"] += overhead(args, "postgres + redis", env, datasets_dir)
        if not args.skip_latency:
            with scratch_postgres(root / "pg-b") as env:
                results["latency"] = latency(args, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = markdown(args, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
