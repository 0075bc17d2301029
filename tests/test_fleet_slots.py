"""``fastarchrank worker --slots K``: K supervised worker processes on one device, each its own node,
running evaluations at the same time; SIGTERM stops them all. And the worker's start-up checks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import DATA_DIR, REPO_ROOT, TEST_ENV, wait_for
from tests.test_fleet_routing import _client, _evaluations, own_queue

pytestmark = pytest.mark.e2e


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _slot_rows() -> list[Any]:
    from app.db import session_scope
    from app.models import WorkerSeen

    with session_scope() as s:
        rows = s.scalars(select(WorkerSeen).where(WorkerSeen.name.like("%@slot%"))).all()
        s.expunge_all()
        return list(rows)


def _start_slots(queue: str) -> tuple[subprocess.Popen[bytes], Path]:
    env = {**os.environ, **TEST_ENV, "FASTARCHRANK_QUEUE": queue}
    log_path = DATA_DIR / f"slots-{uuid.uuid4().hex[:6]}.log"
    parent = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--device", "cpu", "--slots", "2"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return parent, log_path


def _new_slot_rows(before: dict[str, Any]) -> list[Any]:
    """Both slots' beacon rows once this start of the slots wrote them in full (the rows outlive
    earlier tests' slots, and the pool child may write its row before the beacon's capabilities)."""

    def ready() -> list[Any] | None:
        rows = [r for r in _slot_rows() if r.capabilities and r.info.get("pid") != before.get(r.name)]
        return rows if len(rows) == 2 else None

    return wait_for(ready, timeout=120, what="two slot beacons")  # type: ignore[no-any-return]


def test_two_cpu_slots_run_two_evaluations_at_once_and_stop_on_sigterm() -> None:
    with own_queue() as queue, _client() as client:
        before = {r.name: r.info.get("pid") for r in _slot_rows()}
        parent, log_path = _start_slots(queue)
        try:
            rows = _new_slot_rows(before)
            caps = {r.name: r.capabilities for r in rows}
            assert {c["slot"] for c in caps.values()} == {0, 1}
            assert {c["slots"] for c in caps.values()} == {2}
            assert all(c["device_class"] == "cpu" for c in caps.values())
            resp = client.post(
                "/v1/batches",
                json={
                    "space": "nb201",
                    "dataset": "synthetic_cifar10",
                    "methods": [{"name": "shortreg", "preset": "tiny", "config": {"epochs": 12}}],
                    "seed": 81,
                    "items": [{"nb201_index": 4000}, {"nb201_index": 4001}],
                },
            )
            assert resp.status_code == 201, resp.text
            batch_id = resp.json()["batch_id"]

            def both_running() -> list[Any] | None:
                evs = _evaluations(batch_id)
                running = [e for e in evs if e.status == "running"]
                return running if len(running) == 2 else None

            running = wait_for(
                both_running, timeout=180, interval=0.1, what="two evaluations running at once"
            )
            nodes = {e.worker.split("/")[0] for e in running}
            assert len(nodes) == 2 and all("@slot" in n for n in nodes), nodes
            assert all(e.device.startswith("cpu") for e in running)
            pids = {r.info["pid"] for r in _slot_rows()}
            assert len(pids) == 2
            parent.send_signal(signal.SIGTERM)
            parent.wait(timeout=90)
            wait_for(lambda: not any(_pid_alive(p) for p in pids), timeout=30, what="both slots to stop")
        finally:
            if parent.poll() is None:
                print(log_path.read_text(errors="replace")[-4000:])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(parent.pid, signal.SIGKILL)


def test_slots_stop_when_their_supervisor_is_killed() -> None:
    """SIGKILL leaves the supervisor no chance to stop its slots: they stop by themselves (warm
    shutdown on the parent-death signal) instead of consuming the queue unsupervised."""
    with own_queue() as queue:
        before = {r.name: r.info.get("pid") for r in _slot_rows()}
        parent, _ = _start_slots(queue)
        pids: set[int] = set()
        try:
            pids = {r.info["pid"] for r in _new_slot_rows(before)}
            assert len(pids) == 2 and all(_pid_alive(p) for p in pids)
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(timeout=30)
            wait_for(
                lambda: not any(_pid_alive(p) for p in pids), timeout=60, what="the orphaned slots to stop"
            )
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(parent.pid, signal.SIGKILL)


def test_slot_environment_names_each_slot() -> None:
    from worker.slots import slot_env

    env = slot_env({"X": "1"}, 1, 4)
    assert env["FASTARCHRANK_WORKER_NAME"].endswith("@slot1")
    assert env["FASTARCHRANK_SLOT"] == "1" and env["FASTARCHRANK_SLOTS"] == "4" and env["X"] == "1"


def test_memory_guard_defaults_to_a_share_per_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.settings import get_settings
    from worker.engine import slot_memory_fraction

    monkeypatch.setenv("FASTARCHRANK_SLOTS", "4")
    assert slot_memory_fraction() == 0.25
    monkeypatch.setenv("FASTARCHRANK_SLOTS", "1")
    assert slot_memory_fraction() is None
    monkeypatch.setenv("FASTARCHRANK_SLOT_MEMORY_FRACTION", "0.3")
    get_settings.cache_clear()
    try:
        assert slot_memory_fraction() == 0.3
    finally:
        monkeypatch.delenv("FASTARCHRANK_SLOT_MEMORY_FRACTION")
        get_settings.cache_clear()


def test_a_worker_asked_for_cuda_without_one_fails_at_start() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = {**os.environ, **TEST_ENV}
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--device", "cuda"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "asked for 'cuda'" in out.stderr and "--device cpu" in out.stderr


def test_ping_reports_a_live_node_and_fails_without_one() -> None:
    from app.db import session_scope
    from app.models import WorkerSeen, utcnow

    env = {**os.environ, **TEST_ENV}
    name = f"ping-{uuid.uuid4().hex[:6]}:1"
    argv = [sys.executable, "-m", "app.cli", "worker", "--ping", "--name", name]
    missing = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1, missing.stdout
    with session_scope() as s:
        s.add(WorkerSeen(name=name, device="cpu", queue="q", last_seen=utcnow(), info={}))
    alive = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert alive.returncode == 0 and name in alive.stdout
