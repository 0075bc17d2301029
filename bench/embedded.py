"""Start and stop a private `fastarchrank serve` (API + embedded worker) for a benchmark run.

The service runs as a subprocess from a clean environment: every inherited ``FASTARCHRANK_*``
variable is dropped (a test session points them at its Postgres and Redis), then only what the run
needs is set. So the embedded default (SQLite file, filesystem broker) is what gets measured.
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

    ``worker=False`` runs the API alone (``--no-worker``); ``env`` adds settings on top of the clean
    environment (e.g. a Postgres URL for the latency benchmark). The log goes to ``<data_dir>/serve.log``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        datasets_dir: Path | None = None,
        env: dict[str, str] | None = None,
        worker: bool = True,
        start_timeout_s: float = 180.0,
        loglevel: str = "WARNING",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.datasets_dir = datasets_dir
        self.extra_env = dict(env or {})
        self.worker = worker
        self.start_timeout_s = start_timeout_s
        self.loglevel = loglevel
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "serve.log"

    def __enter__(self) -> str:
        self.start()
        return self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Results folders may sit inside a git checkout: keep the service's database and caches out of it.
        (self.data_dir / ".gitignore").write_text("*\n")
        overrides = {"FASTARCHRANK_DATA_DIR": str(self.data_dir), **self.extra_env}
        if self.datasets_dir is not None:
            overrides["FASTARCHRANK_DATASETS_DIR"] = str(self.datasets_dir)
        argv = [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--port",
            str(self.port),
            "--loglevel",
            self.loglevel,
        ]
        if not self.worker:
            argv.append("--no-worker")
        with self.log_path.open("ab") as log:
            # A session of its own, so stop() can end the API and its worker children together.
            self.proc = subprocess.Popen(
                argv,
                env=clean_env(overrides),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceStartError(
                    f"the service exited with {self.proc.returncode}; log:\n{self.log_tail()}"
                )
            try:
                resp = httpx.get(f"{self.url}/v1/health", timeout=2)
                body = resp.json()
                if resp.status_code == 200 and (not self.worker or body["workers"]["recent"] >= 1):
                    return
            except (httpx.TransportError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise ServiceStartError(
            f"the service at {self.url} did not become healthy"
            f"{' with a worker' if self.worker else ''} within {self.start_timeout_s:.0f} s; "
            f"log:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        # A worker child busy in a long evaluation can outlive its parent: end what is left of the
        # session this class started (and nothing else).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
