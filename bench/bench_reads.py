"""Reads under load: ranking pages of a finished and of a still-pending batch, 16 client threads.

    python -m bench.bench_reads [--finished-items 1000] [--pending-items 20000] [--clients 16]
                                [--requests 50] [--out bench/results/reads.md]

One scratch Postgres database, a private Redis queue and no worker (nothing is consumed: the API is
what is measured). A finished batch of ``--finished-items`` NB201 cells x ``params`` is marked done
with random scores by SQL; a pending batch of ``--pending-items`` NATS size-space indices x ``params``
stays queued. Three API processes (uvicorn via ``fastarchrank serve --no-worker``) run on the same
rows: one as configured (rendered pages cached by ETag), one with the page cache off
(``FASTARCHRANK_RANKING_CACHE_ROWS=0``: every request reads and ranks the rows, the path before any
cache), and one that reads the batch's version on every poll (``FASTARCHRANK_RANKING_VERSION_TTL_S=0``),
so the ratios are measured in one run; the pending page on the cache-less process is what the first
poll after a change costs (the page is cached under the batch's version otherwise). Conditional polls
(If-None-Match → 304) are timed too. Several clients are forked processes (one thread each), as
separate controllers are; one row repeats the 16 clients as threads of this process for comparison.
Everything scratch is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.embedded import EmbeddedService
from bench.service_overhead import _hammer, client_run, latency_stats, scratch_postgres


def _post(url: str, body: dict[str, Any]) -> str:
    with httpx.Client(base_url=url, timeout=1800) as http:
        resp = http.post("/v1/batches", json=body)
        resp.raise_for_status()
        return str(resp.json()["batch_id"])


def _mark_done(database_url: str, batch_id: str) -> None:
    from sqlalchemy import create_engine, func, select, update
    from sqlalchemy.orm import Session

    from app.batch_versions import bump
    from app.models import BatchEvaluation, Evaluation

    engine = create_engine(database_url)
    ids = select(BatchEvaluation.evaluation_id).where(BatchEvaluation.batch_id == batch_id)
    # A shortcut around the lifecycle: it bumps the batch's version itself (app/batch_versions.py).
    with Session(engine) as conn, conn.begin():
        bump(conn, [batch_id])
        conn.execute(
            update(Evaluation)
            .where(Evaluation.id.in_(ids))
            .values(
                status="done",
                score=func.random(),
                score_kind="finite",
                finite=True,
                cost_s=func.random(),
                attempts=1,
                finished_at=func.now(),
            )
        )
    engine.dispose()


def _hammer_processes(url: str, clients: int, requests: int, call: Any) -> dict[str, Any]:
    """Like ``_hammer``, but each client is its own forked process (as separate controllers are):
    16 client threads in one interpreter queue on its GIL, which adds their own wait to every
    latency. Forked, so ``call`` may be a closure."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients)
    results: Any = ctx.Queue()

    def client(worker: int) -> None:
        latencies, errors = client_run(url, worker, requests, call, barrier)
        results.put((latencies, errors, time.perf_counter()))

    procs = [ctx.Process(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    parts = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    wall = max(end for _, _, end in parts) - start
    return latency_stats(
        [x for lat, _, _ in parts for x in lat], [e for _, errs, _ in parts for e in errs], wall
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fastarchrank-bench-reads-") as tmp:
        data_dir = Path(tmp)
        with scratch_postgres(data_dir) as env:
            # The API is what is measured, not the per-key limits a lab deployment would also set.
            env = {
                **env,
                "FASTARCHRANK_RATE_LIMIT_PER_MINUTE": "0",
                "FASTARCHRANK_READ_RATE_LIMIT_PER_MINUTE": "0",
            }
            baseline_env = {
                **env,
                "FASTARCHRANK_DATA_DIR": str(data_dir / "nopages"),
                "FASTARCHRANK_RANKING_CACHE_ROWS": "0",
            }
            every_poll_env = {
                **env,
                "FASTARCHRANK_DATA_DIR": str(data_dir / "everypoll"),
                "FASTARCHRANK_RANKING_VERSION_TTL_S": "0",
            }
            with (
                EmbeddedService(data_dir, env=env, workers=0) as url,
                EmbeddedService(data_dir / "nopages", env=baseline_env, workers=0) as base_url,
                EmbeddedService(data_dir / "everypoll", env=every_poll_env, workers=0) as every_url,
            ):
                started = time.perf_counter()
                finished = _post(
                    url,
                    {
                        "space": "nb201",
                        "dataset": "synthetic_cifar10",
                        "methods": [{"name": "params"}],
                        "items": [{"nb201_index": i, "label": f"f{i}"} for i in range(args.finished_items)],
                    },
                )
                _mark_done(env["FASTARCHRANK_DATABASE_URL"], finished)
                pending = _post(
                    url,
                    {
                        "space": "nats_sss",
                        "dataset": "synthetic_cifar10",
                        "methods": [{"name": "params"}],
                        "items": [{"index": i} for i in range(args.pending_items)],
                    },
                )
                setup_s = time.perf_counter() - started

                def finished_page(http: httpx.Client, rng: random.Random) -> httpx.Response:
                    offset = 100 * rng.randrange(max(1, args.finished_items // 100))
                    return http.get(
                        f"/v1/batches/{finished}/ranking", params={"limit": 100, "offset": offset}
                    )

                def full_page(http: httpx.Client, rng: random.Random) -> httpx.Response:
                    return http.get(f"/v1/batches/{finished}/ranking", params={"limit": 1000})

                etags: dict[int, str] = {}

                def conditional_page(http: httpx.Client, rng: random.Random) -> httpx.Response:
                    offset = 100 * rng.randrange(max(1, args.finished_items // 100))
                    headers = {"If-None-Match": etags[offset]} if offset in etags else {}
                    resp = http.get(
                        f"/v1/batches/{finished}/ranking",
                        params={"limit": 100, "offset": offset},
                        headers=headers,
                    )
                    if resp.status_code == 200:
                        etags[offset] = resp.headers["ETag"]
                        return resp
                    return httpx.Response(200) if resp.status_code == 304 else resp

                def pending_page(http: httpx.Client, rng: random.Random) -> httpx.Response:
                    return http.get(f"/v1/batches/{pending}/ranking", params={"limit": 100})

                for warm in (url, base_url, every_url):  # first-use imports and the listing cache's fill
                    _hammer(warm, 2, 10, finished_page)
                _hammer(url, 1, 1, full_page)
                n, k, kp = args.clients, args.requests, args.pending_requests
                many = _hammer_processes  # n clients: n processes
                results = {
                    "finished_16_no_cache": many(base_url, n, k, finished_page),
                    # the version read from the database on every poll (no memo)
                    "finished_16_version_every_poll": many(every_url, n, k, finished_page),
                    "finished_16": many(url, n, k, finished_page),
                    # the same 16 clients as threads of one process (the earlier runs' client)
                    "finished_16_threads": _hammer(url, n, k, finished_page),
                    "finished_16_if_none_match": many(url, n, k, conditional_page),
                    "finished_16_limit_1000": many(url, n, k, full_page),
                    "finished_1": _hammer(url, 1, k, finished_page),
                    # unchanged since the last poll: the page cached under the batch's version
                    "pending_1": _hammer(url, 1, kp, pending_page),
                    "pending_4": many(url, 4, kp, pending_page),
                    "pending_16": many(url, n, kp, pending_page),
                    # the first poll after a change (no page cache: every request ranks in SQL)
                    "pending_1_no_cache": _hammer(base_url, 1, kp, pending_page),
                }
    return {
        "finished_items": args.finished_items,
        "pending_items": args.pending_items,
        "clients": args.clients,
        "setup_s": setup_s,
        **results,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Reads under load (bench/bench_reads.py)",
        "",
        f"Finished batch {result['finished_items']} items, pending batch {result['pending_items']} items, "
        "Postgres, one uvicorn API process per configuration, no worker, rate limits off.",
        "",
        "| case | requests | errors | p50 ms | p99 ms | req/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result.items():
        if isinstance(r, dict):
            p50, p99, rps = (
                "-" if r[k] is None else f"{r[k]:.{d}f}"
                for k, d in (("p50_ms", 1), ("p99_ms", 1), ("throughput_rps", 0))
            )
            errors = f"{r['errors']} {r['error_examples']}" if r["errors"] else "0"
            lines.append(f"| {name} | {r['requests']} | {errors} | {p50} | {p99} | {rps} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished-items", type=int, default=1000)
    parser.add_argument("--pending-items", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--pending-requests", type=int, default=10, help="requests per client, pending")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2, default=str))
    text = markdown(result)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
