"""End to end through a real Celery worker process on Redis and Postgres, and worker-side reliability:
duplicate delivery, lost workers, never-published evaluations."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.catalog.zero_cost import MEASURES as ZERO_COST_MEASURES
from tests.conftest import WorkerProcess, wait_for

pytestmark = pytest.mark.e2e

TINY = {"preset": "tiny"}
# every zero-cost measure but params, which the test runs at full size
ZERO_COST_TINY = [name for name in ZERO_COST_MEASURES if name != "params"]


def _post(client, body):  # type: ignore[no-untyped-def]
    resp = client.post("/v1/batches", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()["batch_id"]


def _wait_done(client, batch_id: str, timeout: float = 240.0, worker: WorkerProcess | None = None):  # type: ignore[no-untyped-def]
    def done():  # type: ignore[no-untyped-def]
        s = client.get(f"/v1/batches/{batch_id}").json()
        return s if s["status"] == "done" else None

    try:
        return wait_for(done, timeout=timeout, what=f"batch {batch_id} to finish")
    except AssertionError:
        if worker is not None:
            print(worker.output())
        raise


def _evaluations(session, batch_id: str):  # type: ignore[no-untyped-def]
    from app.models import BatchEvaluation, Evaluation

    session.expire_all()
    return session.scalars(
        select(Evaluation)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .where(BatchEvaluation.batch_id == batch_id)
        .order_by(Evaluation.id)
    ).all()


def test_params_and_zero_cost_end_to_end(client, worker, db_session) -> None:  # type: ignore[no-untyped-def]
    """post → real worker evaluates → ranking; params equals the spec's formula at C=16, N=5."""
    batch_id = _post(
        client,
        {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params", "config": {"network": {"C": 16, "N": 5}}}]
            + [{"name": m, **TINY} for m in ZERO_COST_TINY],
            "seed": 7,
            "items": [
                {"nb201_index": 1462, "label": "all3x3"},
                {"nb201_index": 1, "label": "idx1"},
                {"nb201_index": 1651, "label": "allnone"},
            ],
        },
    )
    status = _wait_done(client, batch_id, worker=worker)
    assert status["counts"]["done"] == 3 * (1 + len(ZERO_COST_TINY)), status
    ranking = client.get(f"/v1/batches/{batch_id}/ranking", params={"method": "params"}).json()
    by_label = {i["label"]: i for i in ranking["items"]}
    assert by_label["all3x3"]["score"] == 1_531_546
    assert by_label["idx1"]["score"] == 802_426
    assert by_label["allnone"]["score"] == 73_306
    assert [i["label"] for i in ranking["items"]] == ["all3x3", "idx1", "allnone"]
    syn = client.get(f"/v1/batches/{batch_id}/ranking", params={"method": "synflow"}).json()
    assert {i["label"] for i in syn["items"]} == {"all3x3", "idx1", "allnone"}
    allnone = next(i for i in syn["items"] if i["label"] == "allnone")
    assert allnone["score"] == 0.0  # every path blocked: a legitimate bottom score
    # degenerate cell: undefined measures are stored non-finite with a reason and ranked last
    for method, text in (("jacob_cov", "nan"), ("naswot", "-inf")):
        listing = client.get(f"/v1/batches/{batch_id}/ranking", params={"method": method}).json()["items"]
        assert listing[-1]["label"] == "allnone" and listing[-1]["rank"] is None
        assert listing[-1]["score_repr"] == text and listing[-1]["reason"]
    for ev in _evaluations(db_session, batch_id):
        assert ev.attempts == 1 and ev.device and ev.device.startswith("cpu")
        assert ev.cost_s is not None and ev.cost_s >= 0
    health = client.get("/v1/health").json()
    assert health["workers"]["recent"] >= 1
    _check_report_plots_and_exports(client, batch_id)


def _check_report_plots_and_exports(client, batch_id: str) -> None:  # type: ignore[no-untyped-def]
    """Report against the client's ground truth, PNGs of the stated size, CSV/JSON with every field."""
    import csv
    import io

    from PIL import Image

    gt = {"all3x3": 93.0, "idx1": 89.0, "allnone": 10.0}
    put = client.put(
        f"/v1/batches/{batch_id}/ground_truth/nb201-test",
        json={"items": [{"label": k, "value": v} for k, v in gt.items()]},
    )
    assert put.status_code == 200 and put.json()["created"] == 3, put.text
    again = client.put(
        f"/v1/batches/{batch_id}/ground_truth/nb201-test",
        json={"items": [{"label": k, "value": v} for k, v in gt.items()]},
    )
    assert again.json()["unchanged"] == 3  # idempotent
    report = client.get(f"/v1/batches/{batch_id}/report", params={"ground_truth": "nb201-test"}).json()
    params = report["methods"]["params"]
    assert params["spearman"] == pytest.approx(1.0) and params["n_used"] == 3
    assert report["methods"]["synflow"]["n_used"] == 3
    assert [row["p"] for row in params["top_percent"]] == [10, 20, 30, 40, 50, 100]
    md = client.get(
        f"/v1/batches/{batch_id}/report", params={"ground_truth": "nb201-test", "format": "markdown"}
    )
    assert md.status_code == 200 and "params" in md.text and "|" in md.text
    png = client.get(
        f"/v1/batches/{batch_id}/plots/score_vs_ground_truth.png",
        params={"ground_truth": "nb201-test", "width": 800, "height": 400},
    )
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (800, 400)
    cost = client.get(
        f"/v1/batches/{batch_id}/plots/cost_vs_spearman.png", params={"ground_truth": "nb201-test"}
    )
    assert Image.open(io.BytesIO(cost.content)).size == (900, 600)
    exported = client.get(f"/v1/batches/{batch_id}/export.json").json()
    rows = list(csv.DictReader(io.StringIO(client.get(f"/v1/batches/{batch_id}/export.csv").text)))
    assert len(rows) == len(exported["rows"]) == 3 * (1 + len(ZERO_COST_TINY))
    for row, js in zip(rows, exported["rows"], strict=True):
        assert set(row) == set(js)  # every field in both
        assert row["evaluation_id"] == str(js["evaluation_id"]) and row["status"] == js["status"]
        assert json.loads(row["config"]) == js["config"]
        if js["score"] is not None:
            assert float(row["score"]) == js["score"]
    bad = client.put(
        f"/v1/batches/{batch_id}/ground_truth/x", json={"items": [{"nb201_index": 99, "value": 50}]}
    )
    assert bad.status_code == 422 and "not in this batch" in bad.text
    bad = client.put(
        f"/v1/batches/{batch_id}/ground_truth/x", json={"items": [{"label": "idx1", "value": 150}]}
    )
    assert bad.status_code == 422 and "value" in bad.text
    bad = client.get(
        f"/v1/batches/{batch_id}/report", params={"method": "fear", "ground_truth": "nb201-test"}
    )
    assert bad.status_code == 422 and "fear" in bad.text


def test_training_methods_end_to_end(client, worker, db_session) -> None:  # type: ignore[no-untyped-def]
    """fear, shortreg and full through the real worker, with stored timings and effective config."""
    batch_id = _post(
        client,
        {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "fear", **TINY}, {"name": "shortreg", **TINY}, {"name": "full", **TINY}],
            "seed": 3,
            "items": [{"nb201_index": 1462}, {"nb201_index": 1}],
        },
    )
    status = _wait_done(client, batch_id, worker=worker)
    terminal = {k: v for k, v in status["counts"].items() if v}
    assert set(terminal) <= {"done", "unmet"} and sum(terminal.values()) == 6, status
    for ev in _evaluations(db_session, batch_id):
        if ev.method == "fear" and ev.status == "done":
            assert {"stage1_s", "stage2_s"} <= set(ev.timings)
            assert 0.0 <= ev.score <= 1.0
        assert ev.config["network"]["C"] == 8  # the tiny preset's effective config is stored
    report = client.get(f"/v1/batches/{batch_id}/report", params={"ground_truth": "full"}).json()
    assert set(report["methods"]) == {"fear", "shortreg"}


def test_duplicate_delivery_evaluates_once(client, db_session) -> None:  # type: ignore[no-untyped-def]
    from worker.tasks import evaluate

    batch_id = _post(
        client,
        {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}],
            "seed": 11,
            "items": [{"nb201_index": 5}],
        },
    )
    (ev,) = _evaluations(db_session, batch_id)
    evaluate.run([ev.id])
    (ev,) = _evaluations(db_session, batch_id)
    assert ev.status == "done" and ev.attempts == 1
    first_finish = ev.finished_at
    evaluate.run([ev.id])  # the broker delivers the same message again
    (ev,) = _evaluations(db_session, batch_id)
    assert ev.attempts == 1 and ev.finished_at == first_finish


def test_result_from_a_superseded_attempt_is_discarded(client, db_session) -> None:  # type: ignore[no-untyped-def]
    from app.models import Evaluation
    from worker.methods.base import MethodResult
    from worker.runtime import claim, store_results

    batch_id = _post(
        client,
        {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}],
            "seed": 12,
            "items": [{"nb201_index": 6}],
        },
    )
    (ev,) = _evaluations(db_session, batch_id)
    (first,) = claim([ev.id], "cpu")
    # the reaper gives the evaluation to a second attempt while the first still runs
    db_session.execute(update(Evaluation).where(Evaluation.id == ev.id).values(status="queued"))
    db_session.commit()
    (second,) = claim([ev.id], "cpu")
    assert second.attempt == first.attempt + 1
    assert store_results([(first, MethodResult(score=1.0))]) == [False]
    assert store_results([(second, MethodResult(score=2.0))]) == [True]
    (ev,) = _evaluations(db_session, batch_id)
    assert ev.score == 2.0 and ev.attempts == 2


def test_reaper_requeues_stale_running_then_marks_lost(client, db_session) -> None:  # type: ignore[no-untyped-def]
    from app.models import Evaluation, utcnow
    from app.services.maintenance import reap
    from app.settings import get_settings

    batch_id = _post(
        client,
        {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}],
            "seed": 13,
            "items": [{"nb201_index": 7}, {"nb201_index": 8}],
        },
    )
    a, b = _evaluations(db_session, batch_id)
    old = utcnow() - timedelta(seconds=get_settings().stale_after_s + 5)
    db_session.execute(
        update(Evaluation).where(Evaluation.id == a.id).values(status="running", attempts=1, heartbeat_at=old)
    )
    db_session.execute(
        update(Evaluation)
        .where(Evaluation.id == b.id)
        .values(status="running", attempts=get_settings().max_attempts, heartbeat_at=old)
    )
    db_session.commit()
    counts = reap()
    assert counts["requeued"] >= 1 and counts["lost"] >= 1
    a, b = _evaluations(db_session, batch_id)
    # re-queued and published at once (no wait for the sweeper's requeue_after_s)
    assert a.status == "queued" and a.enqueued_at is not None and counts["published"] >= 1
    assert b.status == "lost" and "resubmit" in b.error
    status = client.get(f"/v1/batches/{batch_id}").json()
    assert status["counts"]["lost"] == 1
    # asking again for a lost evaluation gives it another chance
    again = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}],
            "seed": 13,
            "items": [{"nb201_index": 8}],
        },
    ).json()
    assert again["evaluations"]["retried"] == 1


def test_sweeper_publishes_evaluations_never_enqueued(client, db_session) -> None:  # type: ignore[no-untyped-def]
    """A crash between commit and enqueue leaves queued rows without a message; the sweeper sends them."""
    import redis

    from app.models import Evaluation, utcnow
    from app.services.maintenance import sweep
    from app.settings import get_settings

    batch_id = _post(
        client,
        {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}],
            "seed": 14,
            "items": [{"nb201_index": 9}],
        },
    )
    (ev,) = _evaluations(db_session, batch_id)
    settings = get_settings()
    past = utcnow() - timedelta(seconds=settings.requeue_after_s + 5)
    db_session.execute(
        update(Evaluation).where(Evaluation.id == ev.id).values(enqueued_at=None, queued_at=past)
    )
    db_session.commit()
    r = redis.Redis.from_url(settings.effective_broker_url)
    any_queue = f"{settings.queue}.any"  # the routed queue of zero-cost work
    before = r.llen(any_queue)
    assert sweep() >= 1
    assert r.llen(any_queue) >= before + 1
    (ev,) = _evaluations(db_session, batch_id)
    assert ev.enqueued_at is not None
    sweep()  # a second sweep must not publish this row again (its message is in the queue)
    (ev2,) = _evaluations(db_session, batch_id)
    assert ev2.enqueued_at == ev.enqueued_at
    r.close()


# A killed node is judged dead within seconds (as in tests/test_faults.py), not the default 20 s.
FAST_DEATH = {"FASTARCHRANK_WORKER_BEACON_INTERVAL_S": "0.5", "FASTARCHRANK_WORKER_DEAD_AFTER_S": "3"}


def test_worker_killed_mid_evaluation_loses_nothing(client, db_session) -> None:  # type: ignore[no-untyped-def]
    first = WorkerProcess(FAST_DEATH).start()
    batch_id = _post(
        client,
        {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            # Long enough to be killed mid-training (progress shows epoch 1 of 12), short to re-run.
            "methods": [{"name": "shortreg", "preset": "tiny", "config": {"epochs": 12}}],
            "seed": 21,
            "items": [{"nb201_index": 1462}],
        },
    )

    def running():  # type: ignore[no-untyped-def]
        (ev,) = _evaluations(db_session, batch_id)
        return ev.status == "running" and (ev.progress or {}).get("epoch")

    try:
        wait_for(running, timeout=120, what="the evaluation to start training")
    finally:
        first.kill()
    (ev,) = _evaluations(db_session, batch_id)
    assert ev.status == "running" and ev.attempts == 1
    second = WorkerProcess(FAST_DEATH).start()
    try:
        status = _wait_done(client, batch_id, timeout=240, worker=second)
    finally:
        second.stop()
    assert status["counts"]["done"] == 1
    (ev,) = _evaluations(db_session, batch_id)
    assert ev.attempts == 2 and ev.score is not None
