"""Cancel, delete, incremental polling and the failure budget of a batch (issue 16, items 3-5 and 8).

No worker runs here: the tests play the worker's part through the lifecycle functions a worker
calls (claim, heartbeat, fail), so every state is reached deterministically."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from app.api.deps import request_settings
from app.db import session_scope
from app.lifecycle import Claim, claim, fail, heartbeat
from app.models import Batch, BatchEvaluation, BatchItem, Evaluation, GroundTruth, utcnow
from app.settings import Settings
from tests.test_api_batches import batch_body


def _seed() -> int:
    # Evaluations are shared by identity across batches: a fresh seed keeps other tests' out.
    return random.randrange(10**9)


_created: list[str] = []


@pytest.fixture(autouse=True)
def _remove_batches(client: Any) -> Iterator[None]:
    """These tests leave claimed evaluations without a live worker; other tests' reapers would
    find them. Deleting the batches removes them (and is itself exercised here)."""
    yield
    while _created:
        client.delete(f"/v1/batches/{_created.pop()}")


def _post(client: Any, **overrides: Any) -> str:
    resp = client.post("/v1/batches", json=batch_body(**overrides))
    assert resp.status_code == 201, resp.text
    _created.append(resp.json()["batch_id"])
    return str(resp.json()["batch_id"])


def _eval_ids(batch_id: str) -> list[int]:
    with session_scope() as s:
        return sorted(
            s.scalars(select(BatchEvaluation.evaluation_id).where(BatchEvaluation.batch_id == batch_id))
        )


def _statuses(ids: list[int]) -> dict[int, str]:
    with session_scope() as s:
        return dict(s.execute(select(Evaluation.id, Evaluation.status).where(Evaluation.id.in_(ids))).all())  # type: ignore[arg-type]


def _claim(ids: list[int]) -> list[Claim]:
    with session_scope() as s:
        return claim(s, ids, "cpu", "test-node/1")


def _beat(c: Claim, progress: dict[str, Any] | None = None) -> bool:
    with session_scope() as s:
        return heartbeat(s, c, utcnow(), progress)


@pytest.fixture
def no_grace(client: Any) -> Iterator[Any]:
    """Polling with a zero commit-lag grace, so a change is passed by the very next cursor."""
    app = client.app
    app.dependency_overrides[request_settings] = lambda: Settings(poll_grace_s=0)
    yield client
    app.dependency_overrides.pop(request_settings, None)


def test_cancel_queued_and_running(client: Any) -> None:
    seed = _seed()
    bid = _post(client, seed=seed)
    ids = _eval_ids(bid)
    (running,) = _claim(ids[:1])
    assert _beat(running, {"phase": "epoch", "epoch": 3})

    resp = client.post(f"/v1/batches/{bid}/cancel")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["counts"]["cancelled"] == 2 and body["counts"]["running"] == 1
    assert body["stopping"] == 1 and body["cancel_reason"] == "cancelled by its owner"
    # Queued ones are never started: a duplicate message claims nothing.
    assert _claim(ids[1:]) == []

    # Twice is harmless: the same answer.
    again = client.post(f"/v1/batches/{bid}/cancel")
    assert again.status_code == 200 and again.json() == body

    # The worker's next heartbeat stops the run and keeps its partial record.
    assert _beat(running, {"phase": "epoch", "epoch": 4}) is False
    with session_scope() as s:
        ev = s.get(Evaluation, running.evaluation_id)
        assert ev is not None and ev.status == "cancelled"
        assert ev.progress["epoch"] == 4 and ev.finished_at is not None
    status = client.get(f"/v1/batches/{bid}").json()
    assert status["counts"]["cancelled"] == 3 and status["status"] == "done"
    assert status["cancelled_at"] is not None
    ranking = client.get(f"/v1/batches/{bid}/ranking").json()
    assert {i["reason"].split(":")[0] for i in ranking["items"]} == {"cancelled"}

    # Asked for again, a cancelled evaluation runs again (like failed).
    again_bid = _post(client, seed=seed)
    created = client.get(f"/v1/batches/{again_bid}").json()
    assert created["counts"]["queued"] == 3


def test_shared_evaluations_keep_running_for_the_live_batch(client: Any) -> None:
    seed = _seed()
    first = _post(client, seed=seed)
    second = _post(client, seed=seed)  # the same evaluations, reused
    ids = _eval_ids(first)
    assert ids == _eval_ids(second)
    (running,) = _claim(ids[:1])

    body = client.post(f"/v1/batches/{first}/cancel").json()
    assert body["counts"]["cancelled"] == 0 and body["stopping"] == 0
    assert body["kept_for_other_batches"] == 3
    assert _beat(running) is True
    assert set(_statuses(ids).values()) == {"queued", "running"}

    # Once the other batch is cancelled too, nothing keeps them alive.
    body = client.post(f"/v1/batches/{second}/cancel").json()
    assert body["counts"]["cancelled"] == 2 and body["stopping"] == 1


def test_cancel_of_a_running_evaluation_is_withdrawn_when_a_new_batch_needs_it(client: Any) -> None:
    seed = _seed()
    first = _post(client, seed=seed)
    ids = _eval_ids(first)
    (running,) = _claim(ids[:1])
    client.post(f"/v1/batches/{first}/cancel")
    _post(client, seed=seed)  # a live batch asks for the running evaluation
    assert _beat(running) is True
    assert _statuses(ids[:1]) == {ids[0]: "running"}


def test_delete_keeps_shared_evaluations_and_removes_the_rest(client: Any) -> None:
    seed = _seed()
    keep = _post(client, seed=seed)
    gone = _post(client, seed=seed, methods=[{"name": "params"}, {"name": "flops"}])
    shared = _eval_ids(keep)
    own = sorted(set(_eval_ids(gone)) - set(shared))
    assert len(own) == 3

    resp = client.delete(f"/v1/batches/{gone}")
    assert resp.status_code == 204 and resp.content == b""
    with session_scope() as s:
        assert s.get(Batch, gone) is None
        for model in (BatchItem, GroundTruth, BatchEvaluation):
            assert s.scalar(select(func.count()).select_from(model).where(model.batch_id == gone)) == 0  # type: ignore[attr-defined]
        assert s.scalar(select(func.count()).where(Evaluation.id.in_(own))) == 0
        assert s.scalar(select(func.count()).where(Evaluation.id.in_(shared))) == 3
    assert client.get(f"/v1/batches/{keep}").status_code == 200
    assert client.get(f"/v1/batches/{gone}").status_code == 404
    again = client.delete(f"/v1/batches/{gone}")
    assert again.status_code == 404 and again.json()["code"] == "not_found"


def test_delete_stops_a_running_evaluation(client: Any) -> None:
    bid = _post(client, seed=_seed())
    (running,) = _claim(_eval_ids(bid)[:1])
    assert client.delete(f"/v1/batches/{bid}").status_code == 204
    assert _beat(running) is False  # the worker sees it is not its evaluation any more


def test_incremental_polling(no_grace: Any) -> None:
    client = no_grace
    bid = _post(client, seed=_seed())
    first = client.get(f"/v1/batches/{bid}/evaluations")
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 3 and page["more"] is False
    assert {i["status"] for i in page["items"]} == {"queued"}

    # Nothing changed: an empty page, and 304 with the ETag.
    empty = client.get(f"/v1/batches/{bid}/evaluations", params={"after": page["next"]})
    assert empty.json()["items"] == [] and empty.json()["next"] == page["next"]
    etag = empty.headers["ETag"]
    cached = client.get(
        f"/v1/batches/{bid}/evaluations", params={"after": page["next"]}, headers={"If-None-Match": etag}
    )
    assert cached.status_code == 304

    changed = page["items"][1]["evaluation_id"]
    _claim([changed])
    delta = client.get(f"/v1/batches/{bid}/evaluations", params={"after": page["next"]})
    assert [i["evaluation_id"] for i in delta.json()["items"]] == [changed]
    assert delta.json()["items"][0]["status"] == "running"
    assert int(delta.json()["next"]) > int(page["next"])

    # Paging: limit 1 walks through everything once.
    seen, cursor, more = [], "0", True
    while more:
        part = client.get(f"/v1/batches/{bid}/evaluations", params={"after": cursor, "limit": 1}).json()
        seen += [i["evaluation_id"] for i in part["items"]]
        cursor, more = part["next"], part["more"]
    assert sorted(seen) == sorted(_eval_ids(bid))


def test_polling_cursor_waits_out_the_grace(client: Any) -> None:
    """With the default grace a fresh change is returned but the cursor does not pass it yet."""
    bid = _post(client, seed=_seed())
    page = client.get(f"/v1/batches/{bid}/evaluations").json()
    assert len(page["items"]) == 3 and page["next"] == "0"


def test_bad_cursor_is_a_422(client: Any) -> None:
    bid = _post(client, seed=_seed())
    resp = client.get(f"/v1/batches/{bid}/evaluations", params={"after": "abc"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"][-1] == "after"


def test_failure_budget_cancels_the_rest(client: Any) -> None:
    items = [{"nb201_index": i} for i in range(200, 206)]
    bid = _post(client, seed=_seed(), items=items, options={"max_failed": 2})
    ids = _eval_ids(bid)
    first, second = _claim(ids[:2])
    with session_scope() as s:
        assert fail(s, first, "RuntimeError: diverged", "tb")
    assert client.get(f"/v1/batches/{bid}").json()["counts"]["queued"] == 4
    (running,) = _claim(ids[2:3])
    with session_scope() as s:
        assert fail(s, second, "RuntimeError: diverged", "tb")
    status = client.get(f"/v1/batches/{bid}").json()
    assert status["counts"] == {**status["counts"], "failed": 2, "cancelled": 3, "running": 1, "queued": 0}
    assert status["cancel_reason"] == "failure budget exhausted"
    # A running evaluation finishes: the budget stops scheduling, not work in progress.
    assert _beat(running) is True


def test_max_failed_is_validated(client: Any) -> None:
    resp = client.post("/v1/batches", json=batch_body(seed=_seed(), options={"max_failed": 0}))
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"][-1] == "max_failed"
