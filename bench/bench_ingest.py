"""Submission ingest on Postgres: one 20,000-item batch × 3 methods (issue 19.5).

Times the submission transaction (validation, architectures, items, evaluations, links; publishing is
not included) into a fresh database — every evaluation new — and then the same batch again — every
evaluation reused. ``--baseline REV`` runs the same measurement with the code of git revision REV in
a subprocess, in the same run, and prints the ratio.

    PYTHONPATH=$PWD python bench/bench_ingest.py --baseline 52a3401
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ADMIN = os.environ.get("FASTARCHRANK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parent.parent


def measure(items: int) -> dict[str, float]:
    """Run in a process whose code is the revision under test; prints nothing but the JSON."""
    from sqlalchemy import create_engine, text

    db = f"fastarchrank_bench_ingest_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    url = ADMIN.rsplit("/", 1)[0] + f"/{db}"
    os.environ["FASTARCHRANK_DATABASE_URL"] = url
    os.environ.setdefault("FASTARCHRANK_DATA_DIR", tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        from app.db import get_engine, session_scope
        from app.migrate import upgrade
        from app.schemas import BatchCreate
        from app.services.submission import submit
        from app.settings import get_settings

        upgrade(url)
        body = BatchCreate.model_validate(
            {
                "space": "nats_sss",
                "dataset": "synthetic_cifar10",
                "methods": [{"name": "params"}, {"name": "synflow"}, {"name": "snip"}],
                "seed": 0,
                "items": [{"index": i} for i in range(items)],
            }
        )
        out: dict[str, float] = {}
        for label in ("all_new_s", "all_reused_s"):
            start = time.perf_counter()
            with session_scope() as session:
                result = submit(session, body, get_settings())
            out[label] = time.perf_counter() - start
            out[label.replace("_s", "_evaluations")] = float(
                result.new if label == "all_new_s" else result.reused
            )
        get_engine().dispose()
        return out
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def run_revision(rev: str, items: int) -> dict[str, float]:
    """The same measurement with the app/ and migrations/ of another revision."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-rev-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, "app", "migrations"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        script = Path(tmp) / "bench_ingest.py"
        script.write_text(Path(__file__).read_text())
        env = {**os.environ, "PYTHONPATH": tmp}
        done = subprocess.run(
            [sys.executable, str(script), "--items", str(items), "--measure-only"],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        )
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--baseline", metavar="REV", help="git revision to compare against, in the same run")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_only:
        print(json.dumps(measure(args.items)))
        return
    now = measure(args.items)
    print(f"{args.items} items x 3 methods on Postgres")
    print(f"  this tree: all new {now['all_new_s']:.2f} s, all reused {now['all_reused_s']:.2f} s")
    if args.baseline:
        base = run_revision(args.baseline, args.items)
        print(
            f"  {args.baseline}: all new {base['all_new_s']:.2f} s, all reused {base['all_reused_s']:.2f} s"
        )
        print(
            f"  speed-up: all new {base['all_new_s'] / now['all_new_s']:.1f}x, "
            f"all reused {base['all_reused_s'] / now['all_reused_s']:.1f}x"
        )


if __name__ == "__main__":
    main()
