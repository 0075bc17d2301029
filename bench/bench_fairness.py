"""Fair queues (issue 16.6): time-to-first-result and time-to-done of a small batch posted right
after a large one, with broker priorities on and off, measured in one run on the real stack
(Postgres, Redis, one real Celery worker process; one architecture per task).

Each scenario starts a worker, warms it with a one-item batch, then posts the large batch and at
once the small one (the worker is already busy with the large batch's first task, as in a live
service). Times are the stored ``finished_at`` of the evaluations, from the moment the small batch
was posted. Writes bench/results/fairness.{json,md,png}.

    PYTHONPATH=$PWD python bench/bench_fairness.py [--large 200] [--small 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ADMIN = os.environ.get("FASTARCHRANK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("FASTARCHRANK_BENCH_REDIS", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


@dataclass
class Scenario:
    priorities: bool
    small_first_result_s: float  # from posting the small batch to its first result, seconds
    small_done_s: float  # ... to its last result, seconds
    large_done_s: float  # ... to the large batch's last result, seconds
    large_done_before_small: int  # large-batch evaluations finished before the small batch was done
    task_s: float  # mean run time of one task (finished - started), seconds


def _clear_caches() -> None:
    from app.db import get_engine, get_sessionmaker
    from app.services.queue import producer_app
    from app.settings import get_settings

    with contextlib.suppress(Exception):
        get_engine().dispose()
    for cached in (get_settings, get_engine, get_sessionmaker, producer_app):
        cached.cache_clear()


def _times(batch_id: str) -> list[tuple[str, datetime | None, datetime | None]]:
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import BatchEvaluation, Evaluation

    with session_scope() as s:
        rows = s.execute(
            select(Evaluation.status, Evaluation.started_at, Evaluation.finished_at)
            .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
            .where(BatchEvaluation.batch_id == batch_id)
        )
        return [(st, a, b) for st, a, b in rows]


def _post(client: Any, indexes: list[int], seed: int) -> str:
    resp = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}],
            "seed": seed,
            "items": [{"nb201_index": i} for i in indexes],
        },
    )
    if resp.status_code != 201:
        raise RuntimeError(resp.text)
    return str(resp.json()["batch_id"])


def run_scenario(priorities: bool, large: int, small: int, timeout_s: float) -> Scenario:
    from fastapi.testclient import TestClient

    from app.cli import worker_argv
    from app.main import create_app
    from app.services.queue import priority_keys

    queue = f"bench-fair-{uuid.uuid4().hex[:8]}"
    os.environ["FASTARCHRANK_QUEUE"] = queue
    os.environ["FASTARCHRANK_FAIR_PRIORITIES"] = "true" if priorities else "false"
    _clear_caches()
    rng = random.Random()
    indexes = rng.sample(range(15625), large + small + 1)
    seed = rng.randrange(10**6, 10**9)  # no evaluation is reused from another scenario
    log = Path(os.environ["FASTARCHRANK_DATA_DIR"]) / f"worker-{queue}.log"
    proc = subprocess.Popen(
        worker_argv(queue, f"{queue}@%h", "WARNING"),
        env=dict(os.environ),
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s

    def wait(batch_ids: list[str]) -> None:
        while not all(st == "done" for b in batch_ids for st, _, _ in _times(b)):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"scenario did not finish; worker log:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    try:
        with TestClient(create_app(), base_url="http://127.0.0.1:8000") as client:
            # A warm worker (imports, first network built) so neither scenario pays a cold start.
            wait([_post(client, indexes[-1:], seed)])
            big = _post(client, indexes[:large], seed)
            posted = datetime.now(UTC)
            little = _post(client, indexes[large : large + small], seed)
        wait([big, little])
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        import redis

        r = redis.Redis.from_url(REDIS)
        r.delete(*(k for c in ("gpu", "cpu", "any") for k in priority_keys(f"{queue}.{c}")))
        r.close()
    big_rows, little_rows = _times(big), _times(little)
    t0 = posted.replace(tzinfo=None) if _naive(little_rows) else posted
    small_ends = sorted(b for _, _, b in little_rows if b is not None)
    large_ends = sorted(b for _, _, b in big_rows if b is not None)
    runs = [(b - a).total_seconds() for _, a, b in big_rows + little_rows if a and b]
    return Scenario(
        priorities=priorities,
        small_first_result_s=(small_ends[0] - t0).total_seconds(),
        small_done_s=(small_ends[-1] - t0).total_seconds(),
        large_done_s=(large_ends[-1] - t0).total_seconds(),
        large_done_before_small=sum(1 for b in large_ends if b < small_ends[-1]),
        task_s=sum(runs) / len(runs),
    )


def _naive(rows: list[tuple[str, datetime | None, datetime | None]]) -> bool:
    return any(b is not None and b.tzinfo is None for _, _, b in rows)


def figure(results: list[Scenario], large: int, small: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 2.6), dpi=120)
    labels = [("priorities on" if r.priorities else "priorities off (FIFO)") for r in results]
    y = range(len(results))
    ax.barh([i + 0.2 for i in y], [r.small_first_result_s for r in results], 0.4, label="first result")
    ax.barh([i - 0.2 for i in y], [r.small_done_s for r in results], 0.4, label="batch done")
    ax.set_yticks(list(y), labels)
    ax.set_xlabel("seconds after the small batch was posted")
    ax.set_title(f"{small}-item batch posted behind a {large}-item batch (1 worker)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(results: list[Scenario], large: int, small: int) -> str:
    on = next(r for r in results if r.priorities)
    off = next(r for r in results if not r.priorities)
    lines = [
        "# Fair queues: a small batch behind a large one",
        "",
        f"`PYTHONPATH=$PWD python bench/bench_fairness.py --large {large} --small {small}`: Postgres, "
        "Redis, one warm Celery worker (1 slot), NB201 `params`, one architecture per task; the small "
        "batch is posted right after the large one; seconds from posting the small batch. Both "
        "scenarios measured in one run.",
        "",
        "| priorities | small: first result, s | small: done, s | large: done, s "
        "| large tasks done before small | mean task, s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {'on' if r.priorities else 'off (FIFO)'} | {r.small_first_result_s:.2f} "
            f"| {r.small_done_s:.2f} | {r.large_done_s:.2f} | {r.large_done_before_small} of {large} "
            f"| {r.task_s:.3f} |"
        )
    lines += [
        "",
        f"Ratio off/on: time-to-first-result {off.small_first_result_s / on.small_first_result_s:.1f}×, "
        f"time-to-done {off.small_done_s / on.small_done_s:.1f}×. With priorities only "
        f"{on.large_done_before_small} large-batch tasks finished before the small batch was done "
        "(those the worker took while the small batch was being posted, plus at most about one per "
        "worker slot once it is queued); FIFO makes it wait for the whole large batch. Priorities "
        "only reorder work: the large batch's own time-to-done is its task count × task time in "
        "both rows (the mean task time differs between the rows with the load of this shared "
        "2-core host, not with the setting).",
        "",
        "![fairness](fairness.png)",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=200, help="items of the large batch")
    parser.add_argument("--small", type=int, default=10, help="items of the small batch")
    parser.add_argument("--timeout", type=float, default=600.0, help="per scenario, seconds")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    db = f"fastarchrank_bench_fair_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    os.environ.update(
        {
            "FASTARCHRANK_DATABASE_URL": ADMIN.rsplit("/", 1)[0] + f"/{db}",
            "FASTARCHRANK_BROKER_URL": REDIS,
            "FASTARCHRANK_DATA_DIR": tempfile.mkdtemp(prefix="bench-fair-"),
            "FASTARCHRANK_ZERO_COST_ARCHS_PER_TASK": "1",
            "FASTARCHRANK_TORCH_THREADS": "1",
            "FASTARCHRANK_AUTH": "off",
            "FASTARCHRANK_RATE_LIMIT_PER_MINUTE": "0",
            "FASTARCHRANK_READ_RATE_LIMIT_PER_MINUTE": "0",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    )
    try:
        from app.migrate import upgrade

        upgrade(os.environ["FASTARCHRANK_DATABASE_URL"])
        results = [run_scenario(p, args.large, args.small, args.timeout) for p in (False, True)]
    finally:
        with contextlib.suppress(Exception):
            from app.db import get_engine

            get_engine().dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fairness.json").write_text(
        json.dumps(
            {"large": args.large, "small": args.small, "scenarios": [asdict(r) for r in results]}, indent=2
        )
        + "\n"
    )
    figure(results, args.large, args.small, RESULTS / "fairness.png")
    text_md = report(results, args.large, args.small)
    (RESULTS / "fairness.md").write_text(text_md)
    print(text_md)


if __name__ == "__main__":
    main()
