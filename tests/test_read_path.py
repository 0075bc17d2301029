"""The typed read path: documented operations, an ETA from the first poll, partial results marked as
such, timestamps with an offset, every OpenAPI example accepted, and a CSV that spreadsheets cannot
run as formulas."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from tests.test_api_batches import NB201_A, batch_body

EXPECTED_OPERATIONS = {
    "createBatch",
    "getBatch",
    "getRanking",
    "getReport",
    "createReport",
    "getPlotScores",
    "getPlotCost",
    "exportCsv",
    "exportJson",
    "putGroundTruth",
    "listGroundTruth",
    "getArchitecture",
    "listSpaces",
    "listMethods",
    "listDatasets",
    "getHealth",
    "listBatches",
    "cancelBatch",
    "deleteBatch",
    "listBatchEvaluations",
}
# Operations whose success answer has no body.
NO_CONTENT = {"deleteBatch"}


def test_every_operation_is_named_typed_and_documents_its_errors(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    ops = {op["operationId"]: (path, op) for path, item in schema["paths"].items() for op in item.values()}
    assert set(ops) == EXPECTED_OPERATIONS
    for name, (path, op) in ops.items():
        ok = op["responses"].get("200") or op["responses"].get("201") or op["responses"].get("204")
        assert ok and (ok.get("content") or name in NO_CONTENT), (name, path)
        if "{batch_id}" in path:
            problem = op["responses"]["404"]["content"]["application/problem+json"]["schema"]
            assert problem == {"$ref": "#/components/schemas/Problem"}, name
    csv_op = ops["exportCsv"][1]
    assert "text/csv" in csv_op["responses"]["200"]["content"]
    assert "image/png" in ops["getPlotScores"][1]["responses"]["200"]["content"]


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.utcoffset() is not None and value.utcoffset().total_seconds() == 0, text  # type: ignore[union-attr]
    return value


def _new_batch(client, **overrides: Any) -> str:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/batches", json=batch_body(**overrides))
    assert resp.status_code == 201, resp.text
    return resp.json()["batch_id"]  # type: ignore[no-any-return]


def test_eta_is_given_from_the_first_poll(client) -> None:  # type: ignore[no-untyped-def]
    bid = _new_batch(client, seed=801, methods=[{"name": "params"}, {"name": "fear", "preset": "tiny"}])
    status = client.get(f"/v1/batches/{bid}").json()
    assert status["status"] == "queued"
    assert status["eta_s"] is not None and status["eta_s"] > 0
    assert status["eta_basis"] == "prior"
    _aware(status["created_at"])


def test_eta_prior_and_measurements() -> None:
    from app.services.eta import MethodWork, estimate, prior_cost_s

    fear = MethodWork("fear", "training", "tiny", pending=4, measured_mean_s=None)
    params = MethodWork("params", "static", "default", pending=4, measured_mean_s=0.5)
    assert estimate({"fear": fear}, workers=1).basis == "prior"
    assert estimate({"fear": fear}, workers=2).seconds == 4 * prior_cost_s("fear", "training", "tiny") / 2
    both = estimate({"fear": fear, "params": params}, workers=1)
    assert both.basis == "mixed"
    assert estimate({"params": params}, workers=1).seconds == 2.0
    assert prior_cost_s("fear", "training", "paper") > prior_cost_s("fear", "training", "tiny")
    done = MethodWork("params", "static", "default", pending=0, measured_mean_s=0.5)
    assert estimate({"params": done}, workers=1) == estimate({}, workers=1)


def test_running_batch_is_marked_partial(client) -> None:  # type: ignore[no-untyped-def]
    bid = _new_batch(client, seed=802, methods=[{"name": "params"}, {"name": "flops"}])
    ranking = client.get(f"/v1/batches/{bid}/ranking", params={"method": "params"}).json()
    assert ranking["partial"] is True and ranking["n_pending"] == 3
    report = client.get(f"/v1/batches/{bid}/report").json()
    assert report["partial"] is True and report["n_pending"] == 6
    _aware(report["generated_at"])
    for entry in report["methods"].values():
        assert entry["n_pending"] == 3
        assert all(row["common"] is None and row["spe"] is None for row in entry["top_percent"])
    md = client.get(f"/v1/batches/{bid}/report", params={"format": "markdown"}).text
    assert "Partial results: 6 evaluations" in md
    assert "0.00" not in md.split("## Top-% table: params")[1].split("##")[0]
    assert "| 100 | 3 | — | — |" in md


def test_pending_points_are_not_called_dropped(client) -> None:  # type: ignore[no-untyped-def]
    from app.auth import LOCAL_PRINCIPAL
    from app.db import session_scope
    from app.services import batch_view, report_view

    bid = _new_batch(client, seed=803)
    with session_scope() as session:
        batch = batch_view.get_batch(session, bid, LOCAL_PRINCIPAL)
        scatter = report_view.scatter_rows(session, batch, None, None)
    assert scatter.pending_by_method == {"params": 3}
    assert scatter.rows_by_method == {"params": []}
    png = client.get(f"/v1/batches/{bid}/plots/score_vs_ground_truth.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_every_openapi_example_is_accepted(client) -> None:  # type: ignore[no-untyped-def]
    from app.main import create_app

    schema = create_app().openapi()
    examples = schema["components"]["schemas"]["BatchCreate"]["examples"]
    assert len(examples) >= 4
    for example in examples:
        resp = client.post("/v1/batches", json=example)
        assert resp.status_code in (200, 201), (example["space"], resp.text)
        assert all(m["preset"] in ("tiny", "default") for m in resp.json()["methods"]), resp.json()


def test_csv_export_neutralises_formulas(client) -> None:  # type: ignore[no-untyped-def]
    from app.services.report_view import csv_cell

    evil = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    items = [{"genotype": NB201_A, "label": evil[0]}] + [
        {"nb201_index": i, "label": label} for i, label in enumerate(evil[1:], start=100)
    ]
    bid = _new_batch(client, seed=804, items=items)
    resp = client.get(f"/v1/batches/{bid}/export.csv")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    labels = [row["label"] for row in csv.DictReader(io.StringIO(resp.text))]
    assert labels == ["'" + text for text in evil]
    assert csv_cell(-1.5) == -1.5  # numbers are not formulas
    assert csv_cell("plain") == "plain"
    rows = client.get(f"/v1/batches/{bid}/export.json").json()["rows"]
    assert rows[0]["label"] == evil[0]  # JSON keeps the value as given
    _aware(rows[0]["created_at"])


def test_status_and_report_answer_304_when_unchanged(client) -> None:  # type: ignore[no-untyped-def]
    bid = _new_batch(client, seed=805)
    for path in (f"/v1/batches/{bid}", f"/v1/batches/{bid}/report"):
        first = client.get(path)
        assert first.status_code == 200 and first.headers["ETag"]
        again = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304, path
    other = client.get(
        f"/v1/batches/{bid}/report",
        params={"percents": "10,50"},
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert other.status_code == 200 and other.headers["ETag"] != first.headers["ETag"]


def test_naive_timestamps_leave_as_utc_with_an_offset() -> None:
    """SQLite hands back naive datetimes: they still leave the API as RFC 3339 UTC."""
    from datetime import UTC, timedelta, timezone

    from app.api.models import WorkerSeenOut

    naive = datetime(2026, 12, 2, 1, 2, 3)
    out = WorkerSeenOut(name="w", device="cpu", queue="q", last_seen=naive).model_dump(mode="json")
    assert out["last_seen"] == "2026-12-02T01:02:03Z" or out["last_seen"] == "2026-12-02T01:02:03+00:00"
    plus_two = datetime(2026, 12, 2, 3, 2, 3, tzinfo=timezone(timedelta(hours=2)))
    again = WorkerSeenOut(name="w", device=None, queue=None, last_seen=plus_two)
    assert again.last_seen == naive.replace(tzinfo=UTC) and again.last_seen.utcoffset() == timedelta(0)
