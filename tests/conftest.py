"""Test session set-up: a fresh Postgres database (migrated by Alembic), a private Redis queue, a temp
data dir. Settings are read from the environment, so they are set before any app module is imported.

Override the servers with FASTARCHRANK_TEST_PG (a libpq URL to the maintenance database) and
FASTARCHRANK_TEST_REDIS.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN = os.environ.get("FASTARCHRANK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("FASTARCHRANK_TEST_REDIS", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]
TEST_DB = f"fastarchrank_test_{RUN_ID}"
DATA_DIR = Path(tempfile.mkdtemp(prefix="fastarchrank-test-"))
REPO_ROOT = Path(__file__).resolve().parent.parent

TEST_ENV = {
    "FASTARCHRANK_DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + f"/{TEST_DB}",
    "FASTARCHRANK_BROKER_URL": REDIS,
    "FASTARCHRANK_DATA_DIR": str(DATA_DIR),
    "FASTARCHRANK_QUEUE": f"evaluations-test-{RUN_ID}",
    # Short intervals so the reliability machinery acts within a test's patience.
    "FASTARCHRANK_HEARTBEAT_INTERVAL_S": "0.5",
    "FASTARCHRANK_STALE_AFTER_S": "4",
    "FASTARCHRANK_REQUEUE_AFTER_S": "2",
    "FASTARCHRANK_SWEEP_INTERVAL_S": "1",
    "FASTARCHRANK_TORCH_THREADS": "1",
    # Tests of the service itself act as the keyless local owner (loopback); tests/test_auth.py and
    # tests/test_lab_*.py set their own limits and keys.
    "FASTARCHRANK_RATE_LIMIT_PER_MINUTE": "0",
    "FASTARCHRANK_READ_RATE_LIMIT_PER_MINUTE": "0",
}
os.environ.update(TEST_ENV)


def _admin_engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[str]:
    """Create and migrate this session's database; drop it afterwards."""
    from sqlalchemy import text

    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{TEST_DB}"'))
    from app.migrate import upgrade

    upgrade(TEST_ENV["FASTARCHRANK_DATABASE_URL"])
    yield TEST_ENV["FASTARCHRANK_DATABASE_URL"]
    from app.db import get_engine

    get_engine().dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)'))
    admin.dispose()
    _forget_queue_keys(TEST_ENV["FASTARCHRANK_QUEUE"])


def _forget_queue_keys(queue: str) -> None:
    """Leave Redis as we found it: the session's queues (``<queue>`` and the routed ``.gpu``/``.cpu``/
    ``.any``), kombu's bindings of them, and their messages still in Celery's shared unacked hash."""
    import json

    import redis

    r = redis.Redis.from_url(REDIS)
    try:
        patterns = (f"{queue}*", f"_kombu.binding.{queue}*", f"_kombu.binding_permanent.{queue}*")
        for pattern in patterns:
            keys = list(r.scan_iter(match=pattern, count=1000))
            if keys:
                r.delete(*keys)
        for tag, payload in r.hscan_iter("unacked"):
            with contextlib.suppress(ValueError, TypeError, IndexError):
                routing_key = json.loads(payload)[2]
                if isinstance(routing_key, str) and routing_key.startswith(queue):
                    r.hdel("unacked", tag)
                    r.zrem("unacked_index", tag)
    finally:
        r.close()


@pytest.fixture
def client(database: str):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.main import create_app

    # A loopback base URL: the embedded default's keyless local owner applies (docs/security.md).
    with TestClient(create_app(), base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(autouse=True)
def _cancel_leftover_work(database: str) -> Iterator[None]:
    """Work a test submitted to this session's database and left unfinished is cancelled when it
    ends: otherwise the sweeper re-publishes it and later tests' workers spend their time (and their
    warm shutdown) on it."""
    try:
        existing: set[str] | None = _batch_ids()
    except Exception:  # hygiene only: a test that takes the database away must not fail here
        existing = None
    yield
    if existing is not None:
        with contextlib.suppress(Exception):
            _cancel_new_batches(existing)


def _batch_ids() -> set[str]:
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Batch

    with session_scope() as s:
        return set(s.scalars(select(Batch.id)))


def _cancel_new_batches(existing: set[str]) -> None:
    from sqlalchemy import select

    from app import lifecycle
    from app.db import session_scope
    from app.models import Batch

    with session_scope() as s:
        for batch_id in set(s.scalars(select(Batch.id).where(Batch.cancelled_at.is_(None)))) - existing:
            lifecycle.cancel_batch(s, batch_id, "the test that submitted it ended")


@pytest.fixture
def db_session(database: str):  # type: ignore[no-untyped-def]
    from app.db import get_sessionmaker

    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def table_counts() -> dict[str, int]:
    """Row counts of every table: 'a bad request changes nothing' is checked against these."""
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import Base

    with session_scope() as s:
        return {
            t.name: s.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables
        }


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.25, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class WorkerProcess:
    """A real Celery worker subprocess consuming this session's private queue."""

    def __init__(self, env: dict[str, str] | None = None, name: str | None = None) -> None:
        self.env = {**os.environ, **TEST_ENV, **(env or {})}
        self.name = name or f"test-{uuid.uuid4().hex[:6]}@%h"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = DATA_DIR / f"worker-{uuid.uuid4().hex[:6]}.log"

    def start(self) -> WorkerProcess:
        from app.cli import worker_argv

        argv = worker_argv(self.env["FASTARCHRANK_QUEUE"], self.name, "INFO")
        self.proc = subprocess.Popen(
            argv,
            env=self.env,
            cwd=REPO_ROOT,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker dies without any chance to clean up."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown as an operator would do it: SIGTERM to the main process only (signalling
        the pool child too can leave billiard's queue lock held and hang the parent); then make sure
        nothing of the group is left."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        if self.proc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


@pytest.fixture
def worker(database: str) -> Iterator[WorkerProcess]:
    w = WorkerProcess().start()
    yield w
    w.stop()


PYTHON = sys.executable


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """On a shared 2-core machine two intra-op threads spin against other jobs and run tiny networks
    many times slower than one thread does; the setting is restored for the tests after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
