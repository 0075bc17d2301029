"""Fault injection against real processes (issue 19): worker SIGKILL (pool child and main process),
the broker stopped during a submission and during tasks, Postgres stopped during a submission and
while workers claim and write results. Tests that stop a service start their own private
redis-server / Postgres on a free port and never touch the machine's shared services. Each checks
that every evaluation ends once, with a terminal status, one row per identity.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import WorkerProcess, wait_for

pytestmark = pytest.mark.e2e

# Fast reliability timings; stale_after_s stays long so that a fast recovery can only come from the
# dead-worker detection (beacon age, PID check), not from the heartbeat rule.
FAST = {
    "FASTARCHRANK_HEARTBEAT_INTERVAL_S": "0.5",
    "FASTARCHRANK_STALE_AFTER_S": "60",
    "FASTARCHRANK_REQUEUE_AFTER_S": "1",
    "FASTARCHRANK_SWEEP_INTERVAL_S": "0.5",
    "FASTARCHRANK_WORKER_BEACON_INTERVAL_S": "0.5",
    "FASTARCHRANK_WORKER_DEAD_AFTER_S": "2",
    "FASTARCHRANK_PUBLISH_LEASE_S": "8",
    "FASTARCHRANK_DB_RETRY_ATTEMPTS": "6",
    "FASTARCHRANK_DB_RETRY_BACKOFF_S": "0.3",
}
PARAMS = [{"name": "params"}, {"name": "synflow", "preset": "tiny"}]
TRAINING = [{"name": "shortreg", "preset": "tiny", "config": {"epochs": 4}}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        def up() -> bool:
            with contextlib.suppress(Exception):
                return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
            return False

        wait_for(up, timeout=20, what="private redis to start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            pytest.skip("no Postgres server binaries under /usr/lib/postgresql")
        self.bin = Path(bins[-1])
        self.port = _free_port()
        self.folder = folder
        self.data = folder / "pgdata"
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            shutil.chown(folder, "postgres")

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "pg.log"),
            "-o",
            opts,
            "-w",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


def _clear_caches() -> None:
    from app.db import get_engine, get_sessionmaker
    from app.services.queue import producer_app
    from app.settings import get_settings

    with contextlib.suppress(Exception):
        get_engine().dispose()
    for cached in (get_settings, get_engine, get_sessionmaker, producer_app):
        cached.cache_clear()


@contextlib.contextmanager
def pointed_at(env: dict[str, str]) -> Iterator[None]:
    """Point this test process (the in-process API) at other services, and back afterwards."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _clear_caches()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _clear_caches()


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fastarchrank-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def own_queue() -> dict[str, str]:
    """A queue no other test publishes to (messages carry ids of one database)."""
    # under the session queue name, so the session-end cleanup removes its keys too
    return {"FASTARCHRANK_QUEUE": f"{os.environ['FASTARCHRANK_QUEUE']}-faults-{uuid.uuid4().hex[:8]}"}


def _client() -> Any:
    from fastapi.testclient import TestClient

    from app.main import create_app

    return TestClient(create_app(), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


def _body(seed: int, methods: list[dict[str, Any]], n: int, space: str = "nb201") -> dict[str, Any]:
    return {
        "space": space,
        "dataset": "synthetic_cifar10",
        "methods": methods,
        "seed": seed,
        "items": [{"nb201_index": 1000 + i} for i in range(n)],
    }


def _evaluations(batch_ids: list[str]) -> list[Any]:
    from app.db import session_scope
    from app.models import BatchEvaluation, Evaluation

    with session_scope() as s:
        linked = select(BatchEvaluation.evaluation_id).where(BatchEvaluation.batch_id.in_(batch_ids))
        return list(
            s.execute(
                select(
                    Evaluation.id,
                    Evaluation.status,
                    Evaluation.attempts,
                    Evaluation.worker,
                    Evaluation.progress,
                )
                .where(Evaluation.id.in_(linked))
                .order_by(Evaluation.id)
            ).all()
        )


def _all_terminal(batch_ids: list[str]) -> bool:
    from app.lifecycle import TERMINAL

    rows = _evaluations(batch_ids)
    return bool(rows) and all(r.status in TERMINAL for r in rows)


def assert_ended_once(
    batch_ids: list[str], expected: int, timeout: float, workers: list[WorkerProcess]
) -> list[Any]:
    """Every evaluation reaches a terminal status; the rows are one per identity."""
    from app.db import session_scope
    from app.models import Evaluation
    from app.settings import get_settings

    try:
        wait_for(lambda: _all_terminal(batch_ids), timeout=timeout, what="every evaluation to end")
    except AssertionError:
        for w in workers:
            print(w.output())
        raise
    rows = _evaluations(batch_ids)
    assert len(rows) == expected
    assert {r.status for r in rows} == {"done"}, [r.status for r in rows]
    assert all(1 <= r.attempts <= get_settings().max_attempts for r in rows)
    with session_scope() as s:
        dupes = s.execute(
            select(Evaluation.architecture_id, Evaluation.method, Evaluation.config_hash, Evaluation.seed)
            .group_by(Evaluation.architecture_id, Evaluation.method, Evaluation.config_hash, Evaluation.seed)
            .having(func.count() > 1)
        ).all()
    assert not dupes
    # nothing started again after the end: the rows stay as they are
    time.sleep(1.5)
    assert [tuple(r[:4]) for r in _evaluations(batch_ids)] == [tuple(r[:4]) for r in rows]
    return rows


# --- worker killed -----------------------------------------------------------------------------------


def _running_owner(batch_id: str) -> tuple[str, int]:
    def started() -> Any:
        (row,) = _evaluations([batch_id])
        return row if row.status == "running" and (row.progress or {}).get("epoch") else None

    row = wait_for(started, timeout=180, what="training to start")
    node, _, pid = row.worker.rpartition("/")
    return node, int(pid)


def test_pool_child_killed_mid_training_is_rerun_by_its_parent(own_queue) -> None:  # type: ignore[no-untyped-def]
    env = {**FAST, **own_queue}
    with pointed_at(own_queue), _client() as client:
        w = WorkerProcess(env=env).start()
        try:
            resp = client.post("/v1/batches", json=_body(31, TRAINING, 1))
            assert resp.status_code == 201, resp.text
            batch_id = resp.json()["batch_id"]
            _node, child = _running_owner(batch_id)
            assert child != w.proc.pid  # type: ignore[union-attr]
            os.kill(child, signal.SIGKILL)
            killed_at = datetime.now(UTC)
            (row,) = assert_ended_once([batch_id], 1, timeout=240, workers=[w])
            assert row.attempts == 2
            assert _second_start(row.id) is not None
            # re-queued by the PID check, long before the heartbeat rule (60 s) would have
            assert (_second_start(row.id) - killed_at).total_seconds() < 30  # type: ignore[operator]
        finally:
            w.stop()


def _second_start(evaluation_id: int) -> datetime | None:
    from app.db import session_scope
    from app.models import Evaluation

    with session_scope() as s:
        ev = s.get(Evaluation, evaluation_id)
        return ev.started_at if ev is not None and ev.attempts >= 2 else None


def test_worker_main_process_killed_mid_training_is_rerun_elsewhere(own_queue) -> None:  # type: ignore[no-untyped-def]
    env = {**FAST, **own_queue}
    with pointed_at(own_queue), _client() as client:
        a = WorkerProcess(env={**env, "FASTARCHRANK_WORKER_NAME": f"a-{uuid.uuid4().hex[:6]}"}).start()
        b = WorkerProcess(env={**env, "FASTARCHRANK_WORKER_NAME": f"b-{uuid.uuid4().hex[:6]}"}).start()
        try:
            resp = client.post("/v1/batches", json=_body(32, TRAINING, 1))
            assert resp.status_code == 201, resp.text
            batch_id = resp.json()["batch_id"]
            node, _pid = _running_owner(batch_id)
            victim, survivor = (a, b) if node == a.env["FASTARCHRANK_WORKER_NAME"] else (b, a)
            victim.kill()  # the main process and its pool child, without any clean-up
            killed_at = datetime.now(UTC)
            (row,) = assert_ended_once([batch_id], 1, timeout=240, workers=[survivor])
            assert row.attempts == 2 and row.worker.startswith(survivor.env["FASTARCHRANK_WORKER_NAME"] + "/")
            # re-queued because the victim's beacon stopped, not after the 60 s heartbeat rule
            assert (_second_start(row.id) - killed_at).total_seconds() < 30  # type: ignore[operator]
        finally:
            a.stop()
            b.stop()


# --- broker stopped ----------------------------------------------------------------------------------


def test_broker_down_during_submit_and_during_tasks(folder, own_queue) -> None:  # type: ignore[no-untyped-def]
    broker = PrivateRedis(folder)
    broker.start()
    env = {**FAST, **own_queue, "FASTARCHRANK_BROKER_URL": broker.url}
    worker = None
    try:
        with pointed_at(env), _client() as client:
            broker.stop()
            down = client.post("/v1/batches", json=_body(41, PARAMS, 8))
            assert down.status_code == 201, down.text
            assert down.json()["published"] is False and down.json()["warnings"]
            broker.start()
            worker = WorkerProcess(env=env).start()
            # the sweeper publishes the first batch; a second batch goes in normally
            up = client.post("/v1/batches", json=_body(42, PARAMS, 24))
            assert up.status_code == 201 and up.json()["published"] is True
            # the broker dies while tasks run, and comes back
            wait_for(
                lambda: any(r.status != "queued" for r in _evaluations([up.json()["batch_id"]])), timeout=120
            )
            broker.stop()
            time.sleep(3)
            broker.start()
            ids = [down.json()["batch_id"], up.json()["batch_id"]]
            assert_ended_once(ids, 2 * 8 + 2 * 24, timeout=180, workers=[worker])
    finally:
        if worker:
            worker.stop()
        broker.stop()


# --- Postgres stopped --------------------------------------------------------------------------------


@pytest.fixture
def private_pg(folder: Path) -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres(folder)
    pg.init()
    pg.start()
    yield pg
    pg.stop()


def test_postgres_down_during_submit_claims_and_result_writes(private_pg, own_queue) -> None:  # type: ignore[no-untyped-def]
    from app.migrate import upgrade

    upgrade(private_pg.url)
    env = {**FAST, **own_queue, "FASTARCHRANK_DATABASE_URL": private_pg.url}
    worker = None
    try:
        with pointed_at(env), _client() as client:
            worker = WorkerProcess(env=env).start()
            first = client.post("/v1/batches", json=_body(51, PARAMS, 24))
            assert first.status_code == 201, first.text
            # down while the worker claims and stores: claims retry, then the message goes back
            wait_for(
                lambda: any(r.status != "queued" for r in _evaluations([first.json()["batch_id"]])),
                timeout=120,
            )
            private_pg.stop()
            # a submission during the outage stores nothing and is refused with a 5xx (503 once the
            # API maps database outages; the body never carries a stack trace)
            during = client.post("/v1/batches", json=_body(52, PARAMS, 5))
            assert during.status_code in (500, 503) and "Traceback" not in during.text
            time.sleep(4)
            private_pg.start()
            again = client.post("/v1/batches", json=_body(52, PARAMS, 5))
            assert again.status_code == 201, again.text
            assert again.json()["evaluations"]["new"] == 10
            assert_ended_once(
                [first.json()["batch_id"], again.json()["batch_id"]], 48 + 10, timeout=180, workers=[worker]
            )
    finally:
        if worker:
            worker.stop()
