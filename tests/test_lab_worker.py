"""Cancel against a real worker: a training run stops at its next heartbeat, is stored `cancelled`
with its progress so far, and the worker goes on with other work."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import select

from app.db import session_scope
from app.models import BatchEvaluation, Evaluation
from tests.conftest import WorkerProcess, wait_for


def _evaluation(batch_id: str) -> Evaluation:
    with session_scope() as s:
        ev = s.scalars(
            select(Evaluation)
            .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
            .where(BatchEvaluation.batch_id == batch_id)
        ).one()
        s.expunge(ev)
        return ev


def test_cancel_stops_a_running_training(client: Any, worker: WorkerProcess) -> None:
    body = {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "methods": [{"name": "shortreg", "preset": "tiny", "config": {"epochs": 400}}],
        "seed": random.randrange(10**9),
        "items": [{"nb201_index": 1462}],
    }
    resp = client.post("/v1/batches", json=body)
    assert resp.status_code == 201, resp.text
    bid = resp.json()["batch_id"]

    def training() -> bool:
        ev = _evaluation(bid)
        return ev.status == "running" and bool((ev.progress or {}).get("epoch"))

    wait_for(training, timeout=180, what=f"the evaluation to start training\n{worker.output()}")
    cancel = client.post(f"/v1/batches/{bid}/cancel")
    assert cancel.status_code == 200 and cancel.json()["stopping"] == 1

    wait_for(lambda: _evaluation(bid).status == "cancelled", timeout=60, what="the run to stop")
    ev = _evaluation(bid)
    assert ev.progress.get("epoch") and ev.finished_at is not None and ev.score is None
    assert client.get(f"/v1/batches/{bid}").json()["counts"]["cancelled"] == 1

    # The worker is free again: a quick batch finishes.
    quick = client.post(
        "/v1/batches",
        json={**body, "methods": [{"name": "params"}], "seed": random.randrange(10**9)},
    ).json()["batch_id"]
    wait_for(
        lambda: client.get(f"/v1/batches/{quick}").json()["status"] == "done",
        timeout=120,
        what=f"the next batch\n{worker.output()}",
    )
