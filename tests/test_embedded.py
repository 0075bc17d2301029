"""The embedded default: `fastarchrank serve` with no configuration (SQLite file, filesystem broker,
one worker started alongside the API) on a fresh data directory."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT, wait_for

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_embedded_end_to_end() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="fastarchrank-embedded-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTARCHRANK_")}
    env.update(
        {
            "FASTARCHRANK_DATA_DIR": str(data_dir),
            "FASTARCHRANK_SWEEP_INTERVAL_S": "1",
            "FASTARCHRANK_TORCH_THREADS": "1",
        }
    )
    log = (data_dir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy():  # type: ignore[no-untyped-def]
            try:
                r = httpx.get(f"{base}/v1/health", timeout=2)
                return r.status_code == 200 and r.json()["workers"]["recent"] >= 1 and r.json()
            except httpx.TransportError:
                return None

        health = wait_for(healthy, timeout=120, what="the embedded service and its worker")
        assert health["database"]["dialect"] == "sqlite"
        assert "filesystem" in health["broker"]["detail"]
        body = {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}, {"name": "flops"}],
            "items": [{"nb201_index": 1462, "label": "big"}, {"nb201_index": 1651, "label": "empty"}],
        }
        created = httpx.post(f"{base}/v1/batches", json=body, timeout=30)
        assert created.status_code == 201, created.text
        batch_id = created.json()["batch_id"]

        def finished():  # type: ignore[no-untyped-def]
            s = httpx.get(f"{base}/v1/batches/{batch_id}", timeout=10).json()
            return s if s["status"] == "done" else None

        status = wait_for(finished, timeout=180, what="the embedded batch")
        assert status["counts"]["done"] == 4, status
        ranking = httpx.get(
            f"{base}/v1/batches/{batch_id}/ranking", params={"method": "params"}, timeout=10
        ).json()
        assert [i["label"] for i in ranking["items"]] == ["big", "empty"]
        assert (data_dir / "fastarchrank.db").exists()
    finally:
        _stop(proc)
        log.close()
    if proc.returncode not in (0, -15, 143):
        print((data_dir / "serve.log").read_text()[-4000:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, 15)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, out, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _start_serve(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTARCHRANK_")}
    env.update({"FASTARCHRANK_DATA_DIR": str(data_dir), "FASTARCHRANK_TORCH_THREADS": "1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--loglevel", "WARNING", *extra],
        env=env,
        cwd=REPO_ROOT,
        stdout=(data_dir / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy():  # type: ignore[no-untyped-def]
        try:
            r = httpx.get(f"{base}/v1/health", timeout=2)
            return r.status_code == 200 and r.json()["workers"]["recent"] >= 1
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=120, what="the embedded service and its worker")
    return proc, base


def _busy(base: str) -> None:
    """Give the worker a task that runs for a while (FEAR trains networks)."""
    body = {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "methods": [{"name": "fear", "preset": "tiny"}],
        "items": [{"nb201_index": i} for i in (1462, 100, 200, 300)],
    }
    assert httpx.post(f"{base}/v1/batches", json=body, timeout=30).status_code == 201


@pytest.mark.parametrize("signal_number", [15, 9], ids=["sigterm", "sigkill"])
def test_stopping_serve_leaves_no_process_behind(signal_number: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="fastarchrank-stop-"))
    proc, base = _start_serve(data_dir, "--worker-grace", "3")
    try:
        _busy(base)
        time.sleep(2)
        family = _descendants(proc.pid)
        assert len(family) >= 2, "serve runs a worker (guard + Celery)"
        os.kill(proc.pid, signal_number)
        proc.wait(timeout=60)
        # SIGTERM: serve stops the worker itself. SIGKILL: the guard sees its parent die. Either way
        # the worker gets a warm shutdown, then a hard kill after the 3 s grace.
        wait_for(lambda: not _alive(family), timeout=40, what=f"no survivor of {sorted(family)}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        for pid in _alive(_descendants(proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
