"""A new user's first hour (issue 18 leftovers): strict numbers in method configs, static measures
that never wait for data, OpenAPI examples that finish on the embedded default, and the small edges."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import table_counts
from tests.test_api_batches import batch_body
from tests.test_worker_e2e import _evaluations


@pytest.mark.parametrize(
    ("field", "value"),
    [("threshold", True), ("threshold", "0.5"), ("max_stage1_epochs", False), ("stage2_epochs", 2.5)],
)
def test_config_numbers_are_strictly_typed(client, field: str, value: Any) -> None:  # type: ignore[no-untyped-def]
    before = table_counts()
    fear = {"name": "fear", "preset": "tiny", "config": {field: value}}
    body = batch_body(seed=1801, methods=[{"name": "params"}, fear])
    resp = client.post("/v1/batches", json=body)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] == "validation_error"
    assert ["body", "methods", 1, "config", field] in [e["loc"] for e in problem["errors"]], problem
    assert table_counts() == before  # a rejected request stores nothing


def test_json_integers_are_accepted_for_float_fields(client) -> None:  # type: ignore[no-untyped-def]
    fear = {"name": "fear", "preset": "tiny", "config": {"threshold": 1, "stage1_lr": 1}}
    body = batch_body(seed=1802, methods=[fear])
    resp = client.post("/v1/batches", json=body)
    assert resp.status_code == 201, resp.text
    fear = resp.json()["methods"][0]
    assert fear["config"]["threshold"] == 1.0 and fear["config"]["stage1_lr"] == 1.0


def test_static_measures_are_stored_before_any_data_is_loaded(client, db_session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """params and synflow read no images: their results are in the database before the first
    dataset load of naswot starts (a first synthetic generation can take minutes)."""
    from worker import engine
    from worker.runtime import claim

    methods = [{"name": "naswot"}, {"name": "params"}, {"name": "synflow"}]
    resp = client.post(
        "/v1/batches", json=batch_body(seed=1803, methods=methods, items=batch_body()["items"][:2])
    )
    assert resp.status_code == 201, resp.text
    batch_id = resp.json()["batch_id"]
    evaluations = _evaluations(db_session, batch_id)
    by_method = {ev.method: ev for ev in evaluations}
    assert sorted(by_method) == ["naswot", "params", "synflow"]

    seen_at_load: list[dict[str, str]] = []
    real_load = engine.load_data

    def observed_load(dataset: str, data_config: dict[str, Any], progress: Any = None) -> Any:
        seen_at_load.append({ev.method + str(ev.id): ev.status for ev in _evaluations(db_session, batch_id)})
        return real_load(dataset, data_config, progress)

    monkeypatch.setattr(engine, "load_data", observed_load)
    engine.run_claims(claim([ev.id for ev in evaluations], "cpu"))

    assert seen_at_load, "naswot loads a dataset"
    first_load = seen_at_load[0]
    for ev in evaluations:
        stored = first_load[ev.method + str(ev.id)] == "done"
        assert stored == (ev.method != "naswot"), first_load
    assert {ev.status for ev in _evaluations(db_session, batch_id)} == {"done"}


def test_every_openapi_example_finishes_on_the_embedded_default() -> None:
    """A newcomer pastes each POST /v1/batches example from /openapi.json into a fresh
    `fastarchrank serve` (SQLite, filesystem broker, no dataset files): every one finishes."""
    import httpx

    from tests.conftest import wait_for
    from tests.embedded_service import embedded_service

    with embedded_service() as url:
        schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
        examples = schema["components"]["schemas"]["BatchCreate"]["examples"]
        assert len(examples) >= 4
        batch_ids = []
        for example in examples:
            resp = httpx.post(f"{url}/v1/batches", json=example, timeout=30)
            assert resp.status_code == 201, (example["space"], resp.text)
            batch_ids.append((example["space"], resp.json()["batch_id"]))

        def all_finished() -> list[dict[str, Any]] | None:
            statuses = [httpx.get(f"{url}/v1/batches/{bid}", timeout=30).json() for _, bid in batch_ids]
            return statuses if all(s["status"] not in ("queued", "running") for s in statuses) else None

        statuses = wait_for(all_finished, timeout=300, interval=1.0, what="every OpenAPI example")
        for (space, _), status in zip(batch_ids, statuses, strict=True):
            assert status["status"] == "done" and status["counts"].get("failed", 0) == 0, (space, status)


def test_a_darts_key_without_space_says_to_add_it(client) -> None:  # type: ignore[no-untyped-def]
    from app.schemas import DARTS_V2

    body = batch_body(space="darts", seed=1804, methods=[{"name": "params"}], items=[{"genotype": DARTS_V2}])
    resp = client.post("/v1/batches", json=body)
    assert resp.status_code == 201, resp.text
    key = client.get(f"/v1/batches/{resp.json()['batch_id']}/evaluations").json()["items"][0]["key"]
    assert client.get(f"/v1/architectures/{key}?space=darts").status_code == 200

    missing = client.get(f"/v1/architectures/{key}")
    assert missing.status_code == 404
    assert "add ?space=darts" in missing.json()["detail"], missing.json()
    unknown_digest = client.get("/v1/architectures/" + "ab" * 32)
    assert unknown_digest.status_code == 404
    assert "add ?space=darts|nb301" in unknown_digest.json()["detail"], unknown_digest.json()


def test_the_worker_in_progress_is_the_worker_in_health(client, worker) -> None:  # type: ignore[no-untyped-def]
    """A user sees which worker runs an evaluation and looks it up in /v1/health: same name."""
    from tests.conftest import wait_for

    fear = {"name": "fear", "preset": "tiny", "config": {"stage2_epochs": 20}}
    resp = client.post(
        "/v1/batches", json=batch_body(seed=1805, methods=[fear], items=batch_body()["items"][:1])
    )
    assert resp.status_code == 201, resp.text
    batch_id = resp.json()["batch_id"]

    def running_entry() -> dict[str, Any] | None:
        entries = client.get(f"/v1/batches/{batch_id}").json()["progress"]
        return entries[0] if entries else None

    entry = wait_for(running_entry, timeout=120, what="a running evaluation in the batch's progress")
    health_names = {w["name"] for w in client.get("/v1/health").json()["workers"]["items"]}
    assert entry["worker"] in health_names, (entry, health_names)
    assert isinstance(entry["worker_pid"], int)
