"""Start and stop a private `fastarchrank serve` (API + embedded worker) for a benchmark run.

The service runs as a subprocess from a clean environment: every inherited ``FASTARCHRANK_*``
variable is dropped (a test session points them at its Postgres and Redis), then only what the run
needs is set. So the embedded default (SQLite file, filesystem broker) is what gets measured unless
``env`` names other servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(overrides: dict[str, str]) -> dict[str, str]:
    """The current environment without any FASTARCHRANK_* variable, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTARCHRANK_")}
    env.update(overrides)
    return env


class ServiceStartError(RuntimeError):
    pass


class EmbeddedService:
    """Context manager: ``with EmbeddedService(data_dir) as url: ...``.

    ``workers`` is the number of worker processes: the one `serve` embeds plus ``workers - 1`` started
    with `fastarchrank worker` on the same database and broker (0 runs the API alone with
    ``--no-worker``). ``env`` adds settings on top of the clean environment (e.g. a Postgres URL).
    Logs go to ``<data_dir>/serve.log`` and ``<data_dir>/worker-<i>.log``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        datasets_dir: Path | None = None,
        env: dict[str, str] | None = None,
        workers: int = 1,
        start_timeout_s: float = 180.0,
        loglevel: str = "WARNING",
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        # Absolute: the processes run with the data directory as their working directory.
        self.data_dir = Path(data_dir).resolve()
        self.datasets_dir = Path(datasets_dir).resolve() if datasets_dir is not None else None
        self.extra_env = dict(env or {})
        self.workers = workers
        self.start_timeout_s = start_timeout_s
        self.loglevel = loglevel
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_path = self.data_dir / "serve.log"

    def __enter__(self) -> str:
        self.start()
        return self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        # The processes run inside the data directory (the filesystem broker writes a control/ folder
        # into its working directory), so the repository goes on the import path explicitly.
        python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        overrides = {"FASTARCHRANK_DATA_DIR": str(self.data_dir), "PYTHONPATH": python_path, **self.extra_env}
        if self.datasets_dir is not None:
            overrides["FASTARCHRANK_DATASETS_DIR"] = str(self.datasets_dir)
        return clean_env(overrides)

    def _spawn(self, argv: list[str], log_path: Path) -> None:
        with log_path.open("ab") as log:
            # A session of its own per process, so stop() can end each with all its children.
            proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Results folders may sit inside a git checkout: keep the service's database and caches out of it.
        (self.data_dir / ".gitignore").write_text("*\n")
        serve = [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--port",
            str(self.port),
            "--loglevel",
            self.loglevel,
        ]
        if self.workers == 0:
            serve.append("--no-worker")
        try:
            self._spawn(serve, self.log_path)
            # The API migrates the database first; extra workers start once it answers.
            self._wait_healthy(min_workers=0)
            for i in range(1, self.workers):
                worker = [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "worker",
                    "--name",
                    f"bench{i}@%h",
                    "--loglevel",
                    "WARNING",
                ]
                self._spawn(worker, self.data_dir / f"worker-{i}.log")
            self._wait_healthy(min_workers=self.workers)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, min_workers: int) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise ServiceStartError(
                        f"a service process exited with {proc.returncode}; log:\n{self.log_tail()}"
                    )
            try:
                resp = httpx.get(f"{self.url}/v1/health", timeout=2)
                if resp.status_code == 200 and resp.json()["workers"]["recent"] >= min_workers:
                    return
            except (httpx.TransportError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise ServiceStartError(
            f"the service at {self.url} did not become healthy with {min_workers} worker(s) within "
            f"{self.start_timeout_s:.0f} s; log:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        for proc in procs:
            if proc.poll() is None:
                # The main process only: signalling a Celery pool child directly can leave
                # billiard's queue lock held and hang the parent's warm shutdown.
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            # A worker child busy in a long evaluation can outlive its parent: end what is left of
            # the session this class started (and nothing else).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
