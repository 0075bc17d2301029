"""``fastarchrank`` command line: serve, worker, migrate, report, bench."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("fastarchrank")


def _settings():  # type: ignore[no-untyped-def]
    from app.settings import get_settings

    return get_settings()


def cmd_migrate(_: argparse.Namespace) -> int:
    from app.migrate import upgrade

    url = _settings().effective_database_url
    upgrade(url)
    print(f"database at head: {_redact(url)}")
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def worker_argv(queue: str, name: str | None, loglevel: str, concurrency: int = 1) -> list[str]:
    # prefork with one child: Celery's soft and hard time limits need a child process to signal
    # and kill, and the parent never touches CUDA, so forking stays safe.
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.tasks",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "-Q",
        queue,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if name:
        argv += ["-n", name]
    return argv


def cmd_worker(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.gpu is not None:
        # One worker process per GPU: the process sees exactly one device.
        env["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
        env["FASTARCHRANK_DEVICE"] = "cuda"
    if args.device:
        env["FASTARCHRANK_DEVICE"] = args.device
    settings = _settings()
    queue = args.queue or settings.queue
    os.execvpe(sys.executable, worker_argv(queue, args.name, args.loglevel), env)
    return 0  # not reached


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.migrate import upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    worker: subprocess.Popen[bytes] | None = None
    if not args.no_worker:
        worker = subprocess.Popen(
            worker_argv(settings.queue, "embedded@%h", args.loglevel), preexec_fn=_die_with_parent
        )
        log.info("embedded worker started (pid %s)", worker.pid)
    broker = "embedded filesystem" if settings.embedded_broker else _redact(settings.effective_broker_url)
    print(
        f"FastArchRank on http://{args.host or settings.host}:{args.port or settings.port}  "
        f"(docs at /docs; database {_redact(settings.effective_database_url)}; "
        f"broker {broker})",
        flush=True,
    )
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_level=args.loglevel.lower(),
        )
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0


def _die_with_parent() -> None:
    """Linux: the embedded worker gets SIGTERM when `serve` dies, even by SIGKILL, so no orphan
    worker keeps consuming the embedded queue. Elsewhere the `finally` in cmd_serve does it."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def cmd_report(args: argparse.Namespace) -> int:
    import httpx

    params = {"format": "markdown"}
    if args.ground_truth:
        params["ground_truth"] = args.ground_truth
    url = f"{args.url.rstrip('/')}/v1/batches/{args.batch_id}/report"
    for _ in range(3):
        try:
            resp = httpx.get(url, params=params, timeout=60)
            break
        except httpx.TransportError as exc:
            err = exc
            time.sleep(1)
    else:
        print(f"cannot reach {args.url}: {err}", file=sys.stderr)
        return 2
    if resp.status_code != 200:
        print(f"error {resp.status_code}: {resp.text}", file=sys.stderr)
        return 1
    print(resp.text)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.harness import main as bench_main

    return bench_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastarchrank", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="API plus one embedded worker (migrates the database first)")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--no-worker", action="store_true", help="run the API alone")
    s.add_argument("--loglevel", default="INFO")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="a Celery worker (one per GPU; CPU if none)")
    w.add_argument(
        "--gpu", type=int, default=None, help="pin this worker to GPU N (sets CUDA_VISIBLE_DEVICES)"
    )
    w.add_argument("--device", default=None, help="override the device: cpu, cuda, cuda:N, auto")
    w.add_argument("--queue", default=None, help="queue to consume (default: settings.queue)")
    w.add_argument("--name", default=None, help="Celery node name")
    w.add_argument("--loglevel", default="INFO")
    w.set_defaults(func=cmd_worker)

    m = sub.add_parser("migrate", help="create/upgrade the database schema (Alembic)")
    m.set_defaults(func=cmd_migrate)

    r = sub.add_parser("report", help="print a batch's correlation report (Markdown) from a running service")
    r.add_argument("batch_id")
    r.add_argument("--url", default="http://127.0.0.1:8000")
    r.add_argument("--ground-truth", default=None, help="ground-truth set name, or 'full'")
    r.set_defaults(func=cmd_report)

    b = sub.add_parser("bench", help="run a benchmark experiment through the API (see bench/)")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
