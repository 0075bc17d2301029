"""Funnel batches: cheap stage on every item, the expensive method on the kept top only.

Validation and the stage transition run on Postgres with hand-set cheap results (the transition is
called as the worker calls it); the whole flow runs end to end on the embedded default with a real
worker (params as the cheap measure, synflow as the "expensive" one)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import wait_for

ITEMS = [
    {"nb201_index": 1462, "label": "all3x3"},  # params 1,531,546 (C=16, N=5)
    {"nb201_index": 1, "label": "idx1"},  # 802,426
    {"nb201_index": 1651, "label": "allnone"},  # 73,306
    {"nb201_index": 77, "label": "idx77"},
    {"nb201_index": 300, "label": "idx300"},
]
SYNFLOW_TINY = {"name": "synflow", "preset": "tiny"}


def _body(funnel: dict, methods: list[dict] | None = None, **options) -> dict:  # type: ignore[type-arg]
    return {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "seed": 5,
        "methods": methods or [{"name": "params"}, {"name": "flops"}],
        "options": {"funnel": funnel, **options},
        "items": ITEMS,
    }


@pytest.mark.parametrize(
    ("funnel", "loc", "text"),
    [
        ({"measure": "snip", "keep": 2, "then": [SYNFLOW_TINY]}, ["measure"], "'snip'"),
        ({"measure": "composite:params+snip", "keep": 2, "then": [SYNFLOW_TINY]}, ["measure"], "'snip'"),
        ({"measure": "params", "keep": 2, "keep_fraction": 0.5, "then": [SYNFLOW_TINY]}, [], "exactly one"),
        ({"measure": "params", "keep": 2, "then": [{"name": "params"}]}, ["then", 0, "alias"], "unique"),
        ({"measure": "params", "keep": 2, "then": [{"name": "nope"}]}, ["then", 0, "name"], "nope"),
    ],
)
def test_bad_funnel_is_422_and_stores_nothing(client, funnel, loc, text) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import table_counts

    before = table_counts()
    resp = client.post("/v1/batches", json=_body(funnel))
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert any(e["loc"][:3] == ["body", "options", "funnel"] and e["loc"][3:] == loc for e in errors), errors
    assert text in resp.text
    assert table_counts() == before


def _complete_cheap(db_session, batch_id: str, scores: dict[str, list[float]]) -> None:  # type: ignore[no-untyped-def]
    """Hand-set the cheap stage's results, in item order, as a worker would have stored them."""
    from app.models import BatchEvaluation, BatchItem, BatchMethod, Evaluation

    rows = db_session.execute(
        select(Evaluation, BatchMethod.alias)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(BatchMethod, BatchMethod.id == BatchEvaluation.batch_method_id)
        .join(
            BatchItem,
            (BatchItem.batch_id == batch_id) & (BatchItem.architecture_id == Evaluation.architecture_id),
        )
        .where(BatchEvaluation.batch_id == batch_id)
        .order_by(BatchItem.position)
    ).all()
    by_alias: dict[str, list] = {}  # type: ignore[type-arg]
    for ev, alias in rows:
        by_alias.setdefault(alias, []).append(ev)
    for alias, values in scores.items():
        for ev, value in zip(by_alias[alias], values, strict=True):
            ev.status = "done"
            ev.set_score(value)
            ev.cost_s = 1.0
    db_session.commit()


def test_funnel_waits_then_keeps_the_top_by_a_composite(client, db_session) -> None:  # type: ignore[no-untyped-def]
    from app.models import Batch
    from app.services import funnel

    body = _body(
        {"measure": "pf", "keep_fraction": 0.5, "then": [{**SYNFLOW_TINY, "alias": "syn"}]},
        composites={"pf": "composite:params+flops"},
    )
    created = client.post("/v1/batches", json=body)
    assert created.status_code == 201, created.text
    batch_id = created.json()["batch_id"]
    assert [m["alias"] for m in created.json()["methods"]] == ["params", "flops", "syn"]
    assert created.json()["evaluations"]["new"] == 10  # the cheap stage only

    waiting = client.get(f"/v1/batches/{batch_id}/ranking", params={"method": "syn"}).json()
    assert waiting["partial"] is True and waiting["n_pending"] == 5
    assert {i["status"] for i in waiting["items"]} == {"waiting"}
    assert client.get(f"/v1/batches/{batch_id}").json()["status"] == "queued"
    assert funnel.advance(db_session, batch_id) == []  # cheap stage still queued: nothing created
    db_session.rollback()

    # params: a4 > a0 > a1 > a3 > a2; flops: a0 > a4 > a3 > a1 > a2 → mean ranks a0 1.5, a4 1.5,
    # a1 3.5, a3 3.5, a2 5: ceil(0.5 x 5) = 3 kept, the tie at 3.5 broken by item order (a1 first)
    _complete_cheap(db_session, batch_id, {"params": [40, 30, 10, 20, 50], "flops": [50, 20, 10, 30, 40]})
    status = client.get(f"/v1/batches/{batch_id}").json()
    assert status["status"] == "running"  # the funnel has not advanced: not done
    # The listing says the same, and its status filter agrees with what it says.
    listed = {
        f: [
            e
            for e in client.get("/v1/batches", params={"status": f, "limit": 1000}).json()["items"]
            if e["batch_id"] == batch_id
        ]
        for f in ("running", "done")
    }
    assert [e["status"] for e in listed["running"]] == ["running"] and listed["done"] == []
    payloads = funnel.advance(db_session, batch_id)
    db_session.commit()
    assert sorted(len(p) for p in payloads) and sum(len(p) for p in payloads) == 3
    assert funnel.advance(db_session, batch_id) == []  # a second advance changes nothing
    db_session.commit()
    batch = db_session.get(Batch, batch_id)
    db_session.refresh(batch)
    assert list(batch.options["funnel_stage"]["kept"]) and batch.options["funnel_stage"]["n_candidates"] == 5

    ranking = client.get(f"/v1/batches/{batch_id}/ranking", params={"method": "syn"}).json()
    by_label = {i["label"]: i for i in ranking["items"]}
    assert {lab for lab, i in by_label.items() if i["status"] == "queued"} == {"all3x3", "idx300", "idx1"}
    for label in ("allnone", "idx77"):
        assert by_label[label]["status"] == "filtered" and by_label[label]["rank"] is None
        assert "filtered by funnel" in by_label[label]["reason"] and "top 0.5" in by_label[label]["reason"]
    assert ranking["n_pending"] == 3
    status = client.get(f"/v1/batches/{batch_id}").json()
    assert status["per_method"]["syn"]["queued"] == 3 and status["status"] == "running"
    exported = client.get(f"/v1/batches/{batch_id}/export.json").json()["rows"]
    assert sum(1 for r in exported if r["method"] == "syn") == 3


def _wait_done(base: str, batch_id: str, timeout: float = 240.0) -> dict:  # type: ignore[type-arg]
    def done():  # type: ignore[no-untyped-def]
        s = httpx.get(f"{base}/v1/batches/{batch_id}", timeout=10).json()
        return s if s["status"] == "done" else None

    return wait_for(done, timeout=timeout, what=f"batch {batch_id}")  # type: ignore[no-any-return]


def test_funnel_end_to_end_on_the_embedded_default() -> None:
    from tests.embedded_service import embedded_service

    with embedded_service() as base:

        def healthy():  # type: ignore[no-untyped-def]
            try:
                r = httpx.get(f"{base}/v1/health", timeout=2)
                return r.status_code == 200 and r.json()["workers"]["recent"] >= 1
            except httpx.TransportError:
                return None

        wait_for(healthy, timeout=120, what="the embedded service and its worker")
        gt = {"all3x3": 93.0, "idx1": 89.0, "allnone": 10.0, "idx77": 85.0, "idx300": 80.0}
        body = _body(
            {"measure": "params", "keep": 2, "then": [SYNFLOW_TINY]},
            methods=[{"name": "params", "config": {"network": {"C": 16, "N": 5}}}],
        )
        body["items"] = [{**item, "ground_truth": gt[item["label"]]} for item in ITEMS]
        created = httpx.post(f"{base}/v1/batches", json=body, timeout=30)
        assert created.status_code == 201, created.text
        batch_id = created.json()["batch_id"]
        status = _wait_done(base, batch_id)
        assert status["per_method"]["params"]["done"] == 5
        assert status["per_method"]["synflow"]["done"] == 2  # the expensive method ran on the kept only
        assert sum(status["per_method"]["synflow"].values()) == 2

        params = httpx.get(f"{base}/v1/batches/{batch_id}/ranking", params={"method": "params"}).json()
        top2 = [i["label"] for i in params["items"][:2]]
        assert top2[0] == "all3x3" and params["items"][0]["score"] == 1_531_546
        syn = httpx.get(f"{base}/v1/batches/{batch_id}/ranking", params={"method": "synflow"}).json()
        assert syn["partial"] is False and syn["total"] == 5
        ranked = {i["label"] for i in syn["items"] if i["status"] == "done"}
        assert ranked == set(top2)
        filtered = [i for i in syn["items"] if i["status"] == "filtered"]
        assert len(filtered) == 3 and all("filtered by funnel" in i["reason"] for i in filtered)
        assert [i["label"] for i in syn["items"][2:]] == [i["label"] for i in filtered]  # listed last

        # a reference batch runs synflow on everything (the two kept are reused, not run again)
        ref_body = {k: v for k, v in body.items() if k != "options"}
        ref_body["methods"] = [SYNFLOW_TINY]
        ref = httpx.post(f"{base}/v1/batches", json=ref_body, timeout=30).json()
        assert ref["evaluations"] == {"new": 3, "reused": 2, "retried": 0}
        _wait_done(base, ref["batch_id"])
        report = httpx.get(
            f"{base}/v1/batches/{batch_id}/report",
            params={"reference_batch": ref["batch_id"], "bootstrap": 0, "percents": "40,100"},
            timeout=30,
        ).json()
        section = report["funnel"]["methods"]["synflow"]
        params_rows = [r for r in httpx.get(f"{base}/v1/batches/{batch_id}/export.json").json()["rows"]]
        cheap = sum(r["cost_s"] for r in params_rows if r["method"] == "params")
        spent = sum(r["cost_s"] for r in params_rows if r["method"] == "synflow")
        assert section["cheap_cost_s"] == pytest.approx(cheap)
        assert section["expensive_cost_s"] == pytest.approx(spent)
        assert section["funnel_cost_s"] == pytest.approx(cheap + spent)
        assert section["estimated_expensive_all_s"] == pytest.approx(spent / 2 * 5)
        assert section["saved_s"] == pytest.approx(spent / 2 * 5 - cheap - spent)
        assert section["n_filtered"] == 3 and report["funnel"]["n_kept"] == 2
        # top-% against synflow on everything: k = 2 at 40 %; common = |ref top 2 ∩ funnel's 2| / 2
        ref_rank = httpx.get(
            f"{base}/v1/batches/{ref['batch_id']}/ranking", params={"method": "synflow"}
        ).json()
        ref_top2 = {i["label"] for i in ref_rank["items"] if i["rank"] is not None and i["rank"] <= 2}
        table = {row["p"]: row for row in section["vs_reference"]["top_percent"]}
        assert table[40]["k"] == 2 and table[40]["common"] == pytest.approx(len(ref_top2 & set(top2)) / 2)
        assert table[100]["common"] == pytest.approx(2 / 5)  # 3 of 5 never scored by the funnel
        assert report["methods"]["synflow"]["n_filtered"] == 3
        posted = httpx.post(
            f"{base}/v1/reports",
            json={"batch_ids": [batch_id], "reference_batch": ref["batch_id"], "percents": [40, 100]},
            timeout=30,
        ).json()
        assert posted["funnel"]["methods"]["synflow"]["vs_reference"] == section["vs_reference"]


def test_stored_result_hook_advances_and_publishes(client, db_session) -> None:  # type: ignore[no-untyped-def]
    """What the worker runs after storing a result (and the maintenance loop without ids): the waiting
    funnel advances in its own transaction and its new evaluations are published (enqueued_at set)."""
    from app.models import BatchEvaluation, BatchMethod, Evaluation
    from app.services.funnel import advance_waiting

    # its own seed: evaluations of another test's batch (same identity) would be reused, not published
    body = {**_body({"measure": "params", "keep": 1, "then": [SYNFLOW_TINY]}), "seed": 6}
    created = client.post("/v1/batches", json=body)
    assert created.status_code == 201, created.text
    batch_id = created.json()["batch_id"]
    cheap_ids = list(
        db_session.scalars(select(BatchEvaluation.evaluation_id).where(BatchEvaluation.batch_id == batch_id))
    )
    assert advance_waiting(cheap_ids) == 0  # still queued: nothing to start
    _complete_cheap(db_session, batch_id, {"params": [1, 2, 3, 5, 4], "flops": [1, 1, 1, 1, 1]})
    assert advance_waiting([cheap_ids[0]]) == 1  # the top one by params: idx77
    assert advance_waiting() == 0  # the maintenance round finds nothing left to advance
    db_session.expire_all()
    stage = db_session.scalars(
        select(Evaluation)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(BatchMethod, BatchMethod.id == BatchEvaluation.batch_method_id)
        .where(BatchEvaluation.batch_id == batch_id, BatchMethod.alias == "synflow")
    ).all()
    assert len(stage) == 1 and stage[0].status == "queued" and stage[0].enqueued_at is not None
    ranking = client.get(f"/v1/batches/{batch_id}/ranking", params={"method": "synflow"}).json()
    assert [i["label"] for i in ranking["items"] if i["status"] != "filtered"] == ["idx77"]
