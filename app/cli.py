"""``fastarchrank`` command line: serve, worker, migrate, report, ground-truth.

Benchmarks are a client of the service, not part of it: run them with ``python -m bench.harness``
(see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from app.processes import die_with_parent

if TYPE_CHECKING:
    from fastarchrank import Client

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


def worker_is_cuda(device: str) -> bool:
    """Whether a worker configured with ``device`` runs on CUDA ("auto": whether this machine has a
    usable GPU; only ever asked in a process that then execs or only spawns)."""
    device = device.strip().lower()
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def worker_classes(explicit: Sequence[str] | None = None) -> list[str]:
    """Device classes a worker consumes: --queues, else ``worker_device_classes``, else by device."""
    from app.services.fleet import default_classes

    if explicit:
        return list(explicit)
    settings = _settings()
    if settings.worker_device_classes:
        return list(settings.worker_device_classes)
    return list(default_classes(worker_is_cuda(os.environ.get("FASTARCHRANK_DEVICE", settings.device))))


def worker_argv(
    queue: str,
    name: str | None,
    loglevel: str,
    concurrency: int = 1,
    classes: Sequence[str] | None = None,
) -> list[str]:
    """``queue`` is the base name; the worker consumes ``<queue>.<class>`` for each device class."""
    # prefork with one child: Celery's soft and hard time limits need a child process to signal
    # and kill, and the parent never touches CUDA, so forking stays safe.
    queues = ",".join(f"{queue}.{c}" for c in worker_classes(classes))
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
        queues,
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
    from app.services.fleet import parse_classes

    if args.ping:
        from worker.slots import ping

        return ping(args.name)
    env = dict(os.environ)
    if args.gpu is not None:
        # One GPU per worker node: its processes see exactly that device, as cuda:0.
        env["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
        env["FASTARCHRANK_DEVICE"] = "cuda"
    if args.device:
        env["FASTARCHRANK_DEVICE"] = args.device
    if args.stack is not None:
        if not 1 <= args.stack <= 64:
            print("fastarchrank worker: --stack takes 1 to 64 evaluations per stack", file=sys.stderr)
            return 2
        env["FASTARCHRANK_STACK_SIZE"] = str(args.stack)
    os.environ.update(
        {
            k: v
            for k, v in env.items()
            if k in ("CUDA_VISIBLE_DEVICES", "FASTARCHRANK_DEVICE", "FASTARCHRANK_STACK_SIZE")
        }
    )
    settings = _settings()
    device = env.get("FASTARCHRANK_DEVICE", settings.device)
    # Fail here, once, with what to fix, rather than failing every task later (this process only
    # execs or spawns, so touching CUDA here is harmless).
    from worker.device_check import DeviceUnavailable, require_device

    try:
        facts = require_device(device)
    except DeviceUnavailable as exc:
        print(f"fastarchrank worker: {exc}", file=sys.stderr)
        return 2
    env["FASTARCHRANK_WORKER_DEVICE_CLASS"] = "gpu" if facts.resolved.startswith("cuda") else "cpu"
    try:
        classes = parse_classes(args.queues) if args.queues else None
    except ValueError as exc:
        print(f"fastarchrank worker: {exc}", file=sys.stderr)
        return 2
    if classes is None and not settings.worker_device_classes:
        classes = ["gpu", "any"] if facts.resolved.startswith("cuda") else ["cpu", "any"]
    queue = args.queue or settings.queue
    env["FASTARCHRANK_QUEUE"] = queue
    if args.slots > 1:
        from worker.slots import run_slots

        return run_slots(
            lambda n: worker_argv(queue, f"slot{n}@%h", args.loglevel, classes=classes), args.slots, env
        )
    os.execvpe(sys.executable, worker_argv(queue, args.name, args.loglevel, classes=classes), env)
    return 0  # not reached


# Celery warns about root on every start; the tasks accept JSON only (no pickle), so in a container
# running as root the warning is noise. Matched by its message so no other warning is hidden.
_ROOT_WARNING_FILTER = "ignore:You're running the worker with superuser privileges"


class EmbeddedWorker:
    """The worker `serve` starts, behind a guard process (``fastarchrank _guard``) in a session of
    its own. The guard stops the worker when asked, and also when `serve` disappears without asking
    (SIGKILL, crash): it watches its parent pid. Stopping is warm first (Celery finishes or hands
    back its task), then a hard kill of the whole session after ``grace_s`` seconds — so no worker
    outlives `serve` for long, and an interrupted evaluation is requeued by the service."""

    def __init__(self, argv: list[str], grace_s: float) -> None:
        self.argv = argv
        self.grace_s = grace_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), _ROOT_WARNING_FILTER) if w)
        guard = [
            sys.executable,
            "-m",
            "app.cli",
            "_guard",
            "--parent",
            str(os.getpid()),
            "--grace",
            str(self.grace_s),
            "--",
            *self.argv,
        ]
        self.proc = subprocess.Popen(guard, env=env, start_new_session=True, preexec_fn=die_with_parent)
        log.info("embedded worker started (guard pid %s)", self.proc.pid)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.grace_s + 10)
            except subprocess.TimeoutExpired:
                log.warning("embedded worker did not stop in %.0f s: killing it", self.grace_s + 10)
        # Whatever is left of the guard's session (the worker and its pool child) ends here.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    # uvicorn captures SIGTERM, shuts down, restores this handler and raises the signal again: as an
    # exception (not the default handler, which would end the process at once) the `finally` blocks
    # and atexit hooks that stop the worker still run.
    raise SystemExit(128 + signum)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.migrate import upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # keep nohup's choice
        signal.signal(signal.SIGHUP, _exit_on_signal)
    upgrade(settings.effective_database_url)
    worker: EmbeddedWorker | None = None
    if not args.no_worker:
        # Through `fastarchrank worker` (which execs Celery): the device check and the choice of
        # queues happen in the worker's process, so this API process never imports torch.
        embedded = [
            sys.executable,
            "-m",
            "app.cli",
            "worker",
            "--name",
            "embedded@%h",
            "--loglevel",
            args.loglevel,
        ]
        worker = EmbeddedWorker(embedded, args.worker_grace)
        atexit.register(worker.stop)
        worker.start()
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
        if worker is not None:
            worker.stop()
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    """Run the worker; stop it (warm, then hard after ``--grace`` s) on SIGTERM or when the parent
    pid is gone. Internal to `serve`."""
    argv = [a for a in args.argv if a != "--"]
    stop: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    child = subprocess.Popen(argv)
    while child.poll() is None and not stop and os.getppid() == args.parent:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)
    if child.poll() is not None:
        return int(child.returncode)
    child.send_signal(signal.SIGTERM)  # Celery's warm shutdown
    try:
        return int(child.wait(timeout=args.grace))
    except subprocess.TimeoutExpired:
        # Hard stop of the session: the worker, its pool child, and this guard last.
        os.killpg(os.getpgid(0), signal.SIGKILL)
    return 137


def service_url(url: str | None) -> str:
    """``--url``, else FASTARCHRANK_URL, else the local `serve` at FASTARCHRANK_HOST/PORT (the
    settings `serve` itself reads), so every command finds the same service."""
    if url:
        return url.rstrip("/")
    if os.environ.get("FASTARCHRANK_URL"):
        return os.environ["FASTARCHRANK_URL"].rstrip("/")
    settings = _settings()
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.port}"


def _client(url: str | None, api_key: str | None = None) -> Client:
    try:
        from fastarchrank import Client
        from fastarchrank._transport import RetryPolicy
    except ImportError as exc:
        raise SystemExit("this command needs the Python client: pip install ./client") from exc

    key = api_key or os.environ.get("FASTARCHRANK_API_KEY") or None
    return Client(service_url(url), api_key=key, retry=RetryPolicy(attempts=3, backoff_s=1.0))


def cmd_report(args: argparse.Namespace) -> int:
    client = _client(args.url, args.api_key)
    from fastarchrank import FastArchRankError

    with client:
        try:
            text = client.batch(args.batch_id).report_markdown(args.ground_truth)
        except FastArchRankError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2 if exc.status is None else 1
    print(text)
    return 0


def cmd_ground_truth_put(args: argparse.Namespace) -> int:
    client = _client(args.url, args.api_key)
    from fastarchrank import FastArchRankError
    from fastarchrank.ground_truth import GroundTruthCsvError, read_csv

    with client:
        try:
            values = read_csv(Path(args.csv), args.value_column)
        except GroundTruthCsvError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            stored = client.batch(args.batch_id).put_ground_truth(
                args.set, values, skip_unknown=not args.strict
            )
        except FastArchRankError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2 if exc.status is None else 1
    print(
        f"ground truth {args.set!r} of batch {args.batch_id}: {len(values)} values "
        f"({stored.created} new, {stored.updated} updated, {stored.unchanged} unchanged, "
        f"{stored.skipped} not in the batch)"
    )
    if values and stored.created + stored.updated + stored.unchanged == 0:
        # Rows of other architectures are skipped by design (a benchmark-wide CSV), but a file of
        # which no row names this batch's architectures is a wrong column, file or batch.
        print(
            "error: no row of the CSV names an architecture of this batch; check the id column "
            "(nb201_index, index or genotype), the space of the indices and the batch id",
            file=sys.stderr,
        )
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastarchrank", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="API plus one embedded worker (migrates the database first)")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--no-worker", action="store_true", help="run the API alone")
    s.add_argument("--loglevel", default="INFO")
    s.add_argument(
        "--worker-grace",
        type=float,
        default=30.0,
        help="seconds the embedded worker may take to finish its task on shutdown before it is killed "
        "(its evaluation is then requeued)",
    )
    s.set_defaults(func=cmd_serve)

    g = sub.add_parser("_guard", help=argparse.SUPPRESS)
    g.add_argument("--parent", type=int, required=True)
    g.add_argument("--grace", type=float, required=True)
    g.add_argument("argv", nargs=argparse.REMAINDER)
    g.set_defaults(func=cmd_guard)

    w = sub.add_parser("worker", help="a Celery worker (one per GPU; CPU if none)")
    w.add_argument(
        "--gpu", type=int, default=None, help="pin this worker to GPU N (sets CUDA_VISIBLE_DEVICES)"
    )
    w.add_argument("--device", default=None, help="override the device: cpu, cuda, cuda:N, auto")
    w.add_argument(
        "--queue", default=None, help="base queue name (default: settings.queue); consumed as <queue>.<class>"
    )
    w.add_argument(
        "--queues",
        default=None,
        help="device classes to consume, e.g. 'cpu,any' or 'gpu,cpu,any' (default: gpu,any on CUDA, "
        "cpu,any on CPU, or settings.worker_device_classes)",
    )
    w.add_argument(
        "--slots",
        type=int,
        default=1,
        help="worker processes on this device (several evaluations per GPU), each its own node "
        "slotN@host, supervised: a dead slot is restarted, SIGTERM stops all",
    )
    w.add_argument(
        "--stack",
        type=int,
        default=None,
        help="train up to K queued NB201 training evaluations that differ only in the architecture as "
        "one stacked network per process (settings.stack_size; 1 = each alone)",
    )
    w.add_argument(
        "--ping",
        action="store_true",
        help="healthcheck: exit 0 if a worker node of this host beaconed recently, else 1",
    )
    w.add_argument("--name", default=None, help="Celery node name")
    w.add_argument("--loglevel", default="INFO")
    w.set_defaults(func=cmd_worker)

    m = sub.add_parser("migrate", help="create/upgrade the database schema (Alembic)")
    m.set_defaults(func=cmd_migrate)

    r = sub.add_parser("report", help="print a batch's correlation report (Markdown) from a running service")
    r.add_argument("batch_id")
    url_help = "service URL (default: FASTARCHRANK_URL, else http://FASTARCHRANK_HOST:FASTARCHRANK_PORT)"
    r.add_argument("--url", default=None, help=url_help)
    r.add_argument("--ground-truth", default=None, help="ground-truth set name, or 'full'")
    key_help = "API key (default: FASTARCHRANK_API_KEY; none needed on the local `serve`)"
    r.add_argument("--api-key", default=None, help=key_help)
    r.set_defaults(func=cmd_report)

    gt = sub.add_parser("ground-truth", help="ground-truth accuracies of a batch")
    gt_sub = gt.add_subparsers(dest="ground_truth_command", required=True)
    put = gt_sub.add_parser("put", help="store a CSV column of accuracies under a named set")
    put.add_argument("batch_id")
    put.add_argument("--set", required=True, help="name of the ground-truth set, e.g. nb201_test_200ep")
    put.add_argument("--csv", required=True, help="CSV file with a nb201_index or genotype column")
    put.add_argument(
        "--value-column", default=None, help="column of accuracies in percent (default: the only other one)"
    )
    put.add_argument(
        "--strict", action="store_true", help="send rows of architectures not in the batch (refused)"
    )
    put.add_argument("--url", default=None, help=url_help)
    put.add_argument("--api-key", default=None, help=key_help)
    put.set_defaults(func=cmd_ground_truth_put)

    from app.auth.cli import add_keys_commands

    add_keys_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: noise on a command's stderr.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # A bad FASTARCHRANK_* variable: name the variable and the rule, not a traceback.
        for error in exc.errors():
            name = "FASTARCHRANK_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: {name}={error.get('input')!r}: {error['msg']}", file=sys.stderr)
        print(
            "see the configuration table in the README (every setting, its unit and range)", file=sys.stderr
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
