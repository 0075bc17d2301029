"""Concurrent overlapping submissions on Postgres (issue 19.1): no deadlock reaches a client as a
5xx, every identity is stored once, and the "new" counters add up to the rows really created."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

POSTERS = 16
ROUNDS = 3
POOL = list(range(100, 180))  # nb201 indices the posters draw overlapping subsets from
METHODS = [{"name": "params"}, {"name": "synflow"}, {"name": "snip"}]


def _post_all(app: Any, bodies: list[dict[str, Any]], headers: list[dict[str, str]]) -> list[Any]:
    """POST every body at once from its own thread and client, released together by a barrier."""
    from fastapi.testclient import TestClient

    barrier = threading.Barrier(len(bodies))
    results: list[Any] = [None] * len(bodies)

    def run(i: int) -> None:
        with TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
            barrier.wait()
            results[i] = c.post("/v1/batches", json=bodies[i], headers=headers[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.fixture(scope="module")
def app(database: str):  # type: ignore[no-untyped-def]
    from app.main import create_app

    return create_app()


def _body(rng: random.Random, seed: int) -> dict[str, Any]:
    items = rng.sample(POOL, 50)  # each poster lists its items in its own order
    methods = METHODS[:]
    rng.shuffle(methods)
    return {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "methods": methods,
        "seed": seed,
        "items": [{"nb201_index": i} for i in items],
    }


def test_concurrent_overlapping_posters_get_no_5xx_and_share_rows(app) -> None:  # type: ignore[no-untyped-def]
    from app.db import session_scope
    from app.models import BatchEvaluation, Evaluation

    rng = random.Random(7)
    seed = rng.randrange(10**8)
    created_new = 0
    batch_ids = []
    for _ in range(ROUNDS):
        bodies = [_body(rng, seed) for _ in range(POSTERS)]
        responses = _post_all(app, bodies, [{}] * POSTERS)
        codes = Counter(r.status_code for r in responses)
        assert codes == {201: POSTERS}, [r.text for r in responses if r.status_code != 201][:3]
        for r in responses:
            data = r.json()
            created_new += data["evaluations"]["new"]
            assert data["evaluations"]["new"] + data["evaluations"]["reused"] == 50 * len(METHODS)
            batch_ids.append(data["batch_id"])
    with session_scope() as s:
        rows = s.scalar(select(func.count()).select_from(Evaluation).where(Evaluation.seed == seed))
        per_identity = s.execute(
            select(Evaluation.architecture_id, Evaluation.method, func.count())
            .where(Evaluation.seed == seed)
            .group_by(Evaluation.architecture_id, Evaluation.method)
            .having(func.count() > 1)
        ).all()
        links = s.scalar(
            select(func.count()).select_from(BatchEvaluation).where(BatchEvaluation.batch_id.in_(batch_ids))
        )
    assert not per_identity
    # every evaluation was counted "new" by exactly one request
    assert created_new == rows and rows <= len(POOL) * len(METHODS)
    assert links == ROUNDS * POSTERS * 50 * len(METHODS)


def test_shared_idempotency_key_with_different_bodies_is_201_or_409_never_5xx(app) -> None:  # type: ignore[no-untyped-def]
    from app.auth import owner_scoped_idempotency_key
    from app.auth.principal import LOCAL_OWNER
    from app.db import session_scope
    from app.models import Batch, IdempotencyRecord

    rng = random.Random(8)
    for round_ in range(ROUNDS):
        key = f"shared-{rng.randrange(10**9)}-{round_}"
        seed = rng.randrange(10**8)
        bodies = [_body(rng, seed) for _ in range(POSTERS)]
        bodies[1] = bodies[0]  # one exact repeat: a replay (200) or the winner itself (201)
        responses = _post_all(app, bodies, [{"Idempotency-Key": key}] * POSTERS)
        codes = Counter(r.status_code for r in responses)
        assert set(codes) <= {200, 201, 409}, [r.text for r in responses if r.status_code >= 500][:3]
        assert codes[201] == 1
        with session_scope() as s:
            # stored per owner (docs/security.md); these requests come from the keyless local owner
            record = s.get(IdempotencyRecord, owner_scoped_idempotency_key(LOCAL_OWNER, key))
            assert record is not None
            batches = s.scalar(select(func.count()).select_from(Batch).where(Batch.seed == seed))
        assert batches == 1
        winner = next(r for r in responses if r.status_code == 201).json()
        assert record.batch_id == winner["batch_id"]
        for r in responses:
            if r.status_code == 200:
                assert r.json()["replayed"] is True and r.json()["batch_id"] == winner["batch_id"]
