"""A new user's first hour (issue 18 leftovers): strict numbers in method configs, static measures
that never wait for data, OpenAPI examples that finish on the embedded default, and the small edges."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import table_counts
from tests.test_api_batches import batch_body


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
