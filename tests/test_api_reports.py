"""Report API over hand-set results: statistics reach the client exactly, bad requests are 4xx."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import table_counts


def _batch_with_scores(client, db_session, seed: int, scores: dict[str, list[float | None]], gt: list[float]):  # type: ignore[no-untyped-def]
    from app.models import BatchEvaluation, BatchItem, BatchMethod, Evaluation

    body = {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "seed": seed,
        "methods": [{"name": name} for name in scores],
        "items": [{"nb201_index": i + 10, "label": f"a{i}", "ground_truth": g} for i, g in enumerate(gt)],
    }
    data = client.post("/v1/batches", json=body).json()
    batch_id = data["batch_id"]
    rows = db_session.execute(
        select(Evaluation, BatchMethod.alias)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(BatchMethod, BatchMethod.id == BatchEvaluation.batch_method_id)
        .join(
            BatchItem,
            (BatchItem.batch_id == batch_id) & (BatchItem.architecture_id == Evaluation.architecture_id),
        )
        .where(BatchEvaluation.batch_id == batch_id)
        .order_by(BatchItem.position)  # item order (architecture ids follow key order, not item order)
    ).all()
    by_alias: dict[str, list] = {}
    for ev, alias in rows:
        by_alias.setdefault(alias, []).append(ev)
    for alias, values in scores.items():
        for ev, value in zip(by_alias[alias], values, strict=True):
            ev.status = "done" if value is not None else "unmet"
            ev.set_score(value)
            ev.cost_s = 2.0
    db_session.commit()
    return batch_id


def test_report_matches_hand_computed_statistics(client, db_session) -> None:  # type: ignore[no-untyped-def]
    gt = [90.0, 80.0, 70.0, 60.0, 50.0]
    batch_id = _batch_with_scores(
        client,
        db_session,
        301,
        {"synflow": [5.0, 4.0, 3.0, 2.0, 1.0], "snip": [1.0, 2.0, 3.0, 4.0, float("nan")]},
        gt,
    )
    report = client.get(f"/v1/batches/{batch_id}/report").json()
    syn, snip = report["methods"]["synflow"], report["methods"]["snip"]
    assert syn["spearman"] == pytest.approx(1.0) and syn["kendall"] == pytest.approx(1.0)
    assert snip["spearman"] == pytest.approx(-1.0) and snip["n_used"] == 4 and snip["n_nonfinite"] == 1
    top = {row["p"]: row for row in syn["top_percent"]}
    assert top[40]["k"] == 2 and top[40]["common"] == 1.0 and top[100]["spe"] == pytest.approx(1.0)
    assert report["costs"]["synflow"]["mean_s"] == pytest.approx(2.0)
    assert report["matrix"]["synflow"]["snip"] == pytest.approx(-1.0)


def test_fewer_than_three_pairs_says_so(client, db_session) -> None:  # type: ignore[no-untyped-def]
    batch_id = _batch_with_scores(client, db_session, 302, {"synflow": [1.0, 2.0]}, [50.0, 60.0])
    syn = client.get(f"/v1/batches/{batch_id}/report").json()["methods"]["synflow"]
    assert syn["spearman"] is None and syn["note"]


def test_cross_batch_report_pools_batches(client, db_session) -> None:  # type: ignore[no-untyped-def]
    a = _batch_with_scores(client, db_session, 303, {"synflow": [3.0, 2.0, 1.0]}, [90.0, 80.0, 70.0])
    from app.models import BatchEvaluation, BatchMethod, Evaluation

    body = {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "seed": 304,
        "methods": [{"name": "synflow"}],
        "items": [{"nb201_index": 40 + i, "ground_truth": g} for i, g in enumerate([60.0, 50.0])],
    }
    b = client.post("/v1/batches", json=body).json()["batch_id"]
    evs = db_session.scalars(
        select(Evaluation)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(BatchMethod, BatchMethod.id == BatchEvaluation.batch_method_id)
        .where(BatchEvaluation.batch_id == b)
        .order_by(Evaluation.architecture_id)
    ).all()
    for ev, v in zip(evs, [0.5, 0.1], strict=True):
        ev.status, ev.cost_s = "done", 1.0
        ev.set_score(v)
    db_session.commit()
    report = client.post("/v1/reports", json={"batch_ids": [a, b]}).json()
    assert report["methods"]["synflow"]["n_used"] == 5
    assert report["methods"]["synflow"]["spearman"] == pytest.approx(1.0)
    assert report["batch_ids"] == [a, b]


def test_report_bad_requests(client, db_session) -> None:  # type: ignore[no-untyped-def]
    batch_id = _batch_with_scores(client, db_session, 305, {"synflow": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0])
    before = table_counts()
    r = client.get(f"/v1/batches/{batch_id}/report", params={"ground_truth": "nope"})
    assert r.status_code == 422 and "client" in r.text  # lists what exists
    r = client.get(f"/v1/batches/{batch_id}/report", params={"ground_truth": "full"})
    assert r.status_code == 422 and "full" in r.text
    r = client.get(f"/v1/batches/{batch_id}/report", params={"percents": "0,200"})
    assert r.status_code == 422 and "percent" in r.text
    r = client.put(
        f"/v1/batches/{batch_id}/ground_truth/s", json={"items": [{"label": "a0", "value": "high"}]}
    )
    assert r.status_code == 422 and "value" in r.text
    r = client.put(
        f"/v1/batches/{batch_id}/ground_truth/s", json={"items": [{"genotype": "|bad|", "value": 1}]}
    )
    assert r.status_code == 422 and "genotype" in r.text
    assert client.get("/v1/batches/nope/report").status_code == 404
    assert table_counts() == before


def test_architecture_lookup_by_index_and_spelling(client, db_session) -> None:  # type: ignore[no-untyped-def]
    _batch_with_scores(client, db_session, 306, {"params": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0])
    by_index = client.get("/v1/architectures/10").json()
    assert by_index["index"] == 10 and by_index["evaluations"]
    assert client.get("/v1/architectures/" + by_index["key"].replace("|", "%7C")).json()["index"] == 10
    assert client.get("/v1/architectures/15000").status_code == 404
    # A key that is nothing of the space: one sentence, then why, then how to look elsewhere.
    garbled = client.get("/v1/architectures/abc")
    assert garbled.status_code == 404
    detail = garbled.json()["detail"]
    assert detail.startswith("architecture 'abc' in space 'nb201' not found: it is no stored key"), detail
    assert detail.endswith("for another space add ?space=<name>"), detail
