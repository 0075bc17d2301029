"""Fair queues: a small batch posted behind a large one overtakes it (Redis priorities per task,
docs/lifecycle.md "Fair queues"), through the API, the real broker and one real worker process."""

from __future__ import annotations

import contextlib
import os
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import select

from tests.conftest import TEST_ENV, WorkerProcess, wait_for

LARGE, SMALL = 60, 3


def _clear_caches() -> None:
    from app.db import get_engine, get_sessionmaker
    from app.services.queue import producer_app
    from app.settings import get_settings

    with contextlib.suppress(Exception):
        get_engine().dispose()
    for cached in (get_settings, get_engine, get_sessionmaker, producer_app):
        cached.cache_clear()


@contextlib.contextmanager
def own_queue(**env: str) -> Iterator[str]:
    """This test's own base queue, one architecture per zero-cost task (so a batch of N items is N
    messages), plus ``env``; every priority list of the queue is removed afterwards."""
    from app.services.queue import priority_keys

    queue = f"fair-{uuid.uuid4().hex[:8]}"
    values = {"FASTARCHRANK_QUEUE": queue, "FASTARCHRANK_ZERO_COST_ARCHS_PER_TASK": "1", **env}
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    _clear_caches()
    try:
        yield queue
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.environ["FASTARCHRANK_QUEUE"] = old["FASTARCHRANK_QUEUE"] or TEST_ENV["FASTARCHRANK_QUEUE"]
        _clear_caches()
        r = redis.Redis.from_url(TEST_ENV["FASTARCHRANK_BROKER_URL"])
        r.delete(*(k for c in ("gpu", "cpu", "any") for k in priority_keys(f"{queue}.{c}")))
        r.close()


def _client() -> Any:
    from fastapi.testclient import TestClient

    from app.main import create_app

    return TestClient(create_app(), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


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
    assert resp.status_code == 201, resp.text
    return str(resp.json()["batch_id"])


def _statuses(batch_id: str) -> list[str]:
    from app.db import session_scope
    from app.models import BatchEvaluation, Evaluation

    with session_scope() as s:
        return list(
            s.scalars(
                select(Evaluation.status)
                .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
                .where(BatchEvaluation.batch_id == batch_id)
            )
        )


def _ids(batch_id: str) -> list[int]:
    from app.db import session_scope
    from app.models import BatchEvaluation

    with session_scope() as s:
        return list(
            s.scalars(select(BatchEvaluation.evaluation_id).where(BatchEvaluation.batch_id == batch_id))
        )


def _by_step(queue: str) -> list[int]:
    """Messages waiting in each priority list of ``<queue>.any``, best step first."""
    from app.services.queue import priority_keys

    r = redis.Redis.from_url(TEST_ENV["FASTARCHRANK_BROKER_URL"])
    try:
        return [int(r.llen(k)) for k in priority_keys(f"{queue}.any")]  # type: ignore[arg-type]
    finally:
        r.close()


def _two_batches(client: Any) -> tuple[str, str, list[int], int]:
    """A large batch, then a small one, on architectures and a seed no other test used."""
    rng = random.Random()
    indexes = rng.sample(range(15625), LARGE + SMALL)
    seed = rng.randrange(10**6, 10**9)
    return _post(client, indexes[:LARGE], seed), _post(client, indexes[LARGE:], seed), indexes, seed


def test_size_priority_is_log_scaled_and_bounded() -> None:
    from app.services.queue import WORST_PRIORITY, size_priority

    steps = [size_priority(n, 4) for n in range(1, 5000)]
    assert steps == sorted(steps), "a larger batch never gets a better step"
    assert size_priority(10, 4) < size_priority(20_000, 4)
    assert size_priority(1, 4) == size_priority(15, 4) == 0 and size_priority(16, 4) == 1
    assert size_priority(20_000, 4) == 6
    assert size_priority(10**12, 4) == WORST_PRIORITY
    assert size_priority(100, 10) == 1 and size_priority(99, 10) == 0


def test_every_publish_gives_a_batch_the_priority_of_its_size() -> None:
    """Submission and a later re-publish (sweeper, reaper, funnel: all call publish()) put the large
    batch one step behind the small one; an evaluation shared with a small batch gets its step."""
    from app.services.queue import publish

    with own_queue() as queue, _client() as client:
        large, small, indexes, seed = _two_batches(client)
        assert _by_step(queue)[:3] == [SMALL, LARGE, 0]
        out = publish([_ids(large)[:5] + _ids(small)])  # a mixed payload (the sweeper's) is split
        assert out.complete and out.tasks == 2
        assert _by_step(queue)[:3] == [SMALL + 1, LARGE + 1, 0]
        # A one-item batch that reuses an evaluation of the large batch: that evaluation now serves a
        # small batch, so its re-publish goes to step 0.
        shared = _post(client, indexes[:1], seed)
        assert _ids(shared)[0] in _ids(large)
        assert publish([_ids(shared)]).complete
        assert _by_step(queue)[:3] == [SMALL + 2, LARGE + 1, 0]
    with own_queue(FASTARCHRANK_FAIR_PRIORITIES="false") as queue, _client() as client:
        _two_batches(client)
        assert _by_step(queue) == [LARGE + SMALL] + [0] * 9, "off: one FIFO list"


@pytest.mark.e2e
def test_small_batch_overtakes_a_large_one_queued_before_it() -> None:
    with own_queue() as queue, _client() as client:
        large, small, _, _ = _two_batches(client)  # no worker yet: everything waits in the broker
        worker = WorkerProcess(
            env={"FASTARCHRANK_QUEUE": queue, "FASTARCHRANK_ZERO_COST_ARCHS_PER_TASK": "1"}
        )
        worker.start()
        try:
            try:
                wait_for(
                    lambda: all(s == "done" for s in _statuses(small)),
                    timeout=180,
                    what="the small batch",
                )
            except AssertionError:
                print(worker.output())
                raise
            large_done = sum(s == "done" for s in _statuses(large))
        finally:
            worker.stop()
        print(f"large-batch tasks done when the small batch was done: {large_done} of {LARGE}")
        # With FIFO the small batch would finish after all 60; with priorities it goes first. One
        # large task may already be running when the small one arrives in a live system; here the
        # small batch was queued before the worker started, so at most a few large tasks finished.
        assert large_done < LARGE // 2, f"{large_done} of {LARGE} large-batch tasks ran first"
