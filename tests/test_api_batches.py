"""Batch API against real Postgres: submission, dedupe, idempotency, bad input, ranking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import table_counts

NB201_A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
# the same cell with the edges of nodes 2 and 3 listed in another order, plus whitespace
NB201_A_REORDERED = (
    "  |nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~2|nor_conv_3x3~1|skip_connect~0|  "
)


def batch_body(**overrides):  # type: ignore[no-untyped-def]
    body = {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "methods": [{"name": "params"}],
        "seed": 0,
        "items": [
            {"genotype": NB201_A, "label": "a", "ground_truth": 91.0},
            {"nb201_index": 1462, "label": "all-3x3", "ground_truth": 93.0},
            {"nb201_index": 1651, "label": "all-none", "ground_truth": 10.0},
        ],
    }
    body.update(overrides)
    return body


def test_post_batch_creates_evaluations_and_status(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/batches", json=batch_body(seed=101))
    assert resp.status_code == 201, resp.text
    data = resp.json()
    assert data["evaluations"] == {"new": 3, "reused": 0, "retried": 0}
    assert data["items"] == 3 and data["architectures"] == 3
    status = client.get(f"/v1/batches/{data['batch_id']}").json()
    assert status["counts"]["queued"] == 3
    assert status["status"] == "queued"
    assert status["per_method"]["params"]["queued"] == 3


def test_two_spellings_of_one_architecture_evaluate_once(client) -> None:  # type: ignore[no-untyped-def]
    body = batch_body(
        seed=102,
        items=[
            {"genotype": NB201_A, "label": "x"},
            {"genotype": NB201_A_REORDERED, "label": "y"},
            {"index": 1, "label": "z"},
        ],
    )
    data = client.post("/v1/batches", json=body).json()
    # index 1 is NB201_A as well (the benchmark's numbering): one architecture, one evaluation
    assert data["architectures"] == 1
    assert data["evaluations"]["new"] == 1
    ranking = client.get(f"/v1/batches/{data['batch_id']}/ranking").json()
    assert ranking["total"] == 3 and {i["label"] for i in ranking["items"]} == {"x", "y", "z"}
    assert len({i["evaluation_id"] for i in ranking["items"]}) == 1


def test_repost_reuses_stored_evaluations(client) -> None:  # type: ignore[no-untyped-def]
    first = client.post("/v1/batches", json=batch_body(seed=103)).json()
    second = client.post("/v1/batches", json=batch_body(seed=103)).json()
    assert first["batch_id"] != second["batch_id"]
    assert second["evaluations"] == {"new": 0, "reused": 3, "retried": 0}
    third = client.post("/v1/batches", json=batch_body(seed=104)).json()
    assert third["evaluations"]["new"] == 3  # another seed is another evaluation


def test_idempotency_key(client) -> None:  # type: ignore[no-untyped-def]
    body = batch_body(seed=105)
    first = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "k-105"})
    assert first.status_code == 201
    before = table_counts()
    again = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "k-105"})
    assert again.status_code == 200
    # the original counters, marked as a replay so that a client does not count them twice
    assert again.json() == {**first.json(), "replayed": True}
    assert first.json()["replayed"] is False and first.json()["published"] is True
    assert table_counts() == before
    other = client.post("/v1/batches", json=batch_body(seed=106), headers={"Idempotency-Key": "k-105"})
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    assert other.json()["code"] == "conflict"
    assert table_counts() == before


def _assert_rejected(client, payload, status: int, loc_part, msg_part: str, raw: bool = False):  # type: ignore[no-untyped-def]
    before = table_counts()
    if raw:
        resp = client.post("/v1/batches", content=payload, headers={"content-type": "application/json"})
    else:
        resp = client.post("/v1/batches", json=payload)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["status"] == status and problem["code"] and problem["detail"], problem
    detail = problem["errors"]
    text = json.dumps(problem)
    assert msg_part in text, text
    if loc_part is not None:
        assert any(loc_part in [str(x) for x in d["loc"]] for d in detail), detail
    assert "Traceback" not in resp.text
    assert table_counts() == before
    return detail


def test_malformed_json_is_422(client) -> None:  # type: ignore[no-untyped-def]
    detail = _assert_rejected(client, b'{"space": nb201}', 422, "body", "not valid JSON", raw=True)
    assert "Expecting value at character 10" in detail[0]["msg"]  # the parser's reason and where


def test_client_shorthands_are_refused_with_the_json_spelling(client) -> None:  # type: ignore[no-untyped-def]
    # The Python client takes "params" and 1462; JSON callers are told what to write instead.
    detail = _assert_rejected(client, batch_body(methods=["params"]), 422, "methods", "a method is an object")
    assert detail[0]["loc"] == ["body", "methods", 0] and '{"name": "params"}' in detail[0]["msg"]
    detail = _assert_rejected(client, batch_body(items=[1462]), 422, "items", "an item is an object")
    assert detail[0]["loc"] == ["body", "items", 0] and '{"nb201_index": 1462}' in detail[0]["msg"]
    detail = _assert_rejected(client, batch_body(items=[NB201_A]), 422, "items", "an item is an object")
    assert '{"genotype": ' in detail[0]["msg"]


def test_an_index_must_be_a_json_integer(client) -> None:  # type: ignore[no-untyped-def]
    # Lax coercion would store true as architecture 1 and "1462" as 1462: both are client bugs.
    for bad in (True, "1462", 1462.5):
        _assert_rejected(client, batch_body(items=[{"nb201_index": bad}]), 422, "nb201_index", "integer")
        _assert_rejected(client, batch_body(items=[{"index": bad}]), 422, "index", "integer")


def test_unknown_space_is_422(client) -> None:  # type: ignore[no-untyped-def]
    _assert_rejected(client, batch_body(space="nb999"), 422, "space", "nb201")


def test_unknown_method_is_422(client) -> None:  # type: ignore[no-untyped-def]
    detail = _assert_rejected(client, batch_body(methods=[{"name": "magic"}]), 422, "name", "unknown method")
    assert "synflow" in detail[0]["msg"]  # the message lists what is allowed


def test_unknown_preset_and_bad_config_are_422(client) -> None:  # type: ignore[no-untyped-def]
    _assert_rejected(client, batch_body(methods=[{"name": "fear", "preset": "huge"}]), 422, "preset", "tiny")
    _assert_rejected(
        client,
        batch_body(methods=[{"name": "shortreg", "preset": "tiny", "config": {"epochs": 0}}]),
        422,
        "epochs",
        "greater than or equal",
    )
    _assert_rejected(
        client,
        batch_body(methods=[{"name": "fear", "preset": "tiny", "config": {"threshold": 1.5}}]),
        422,
        "threshold",
        "less than or equal",
    )
    _assert_rejected(
        client, batch_body(methods=[{"name": "params", "config": {"bogus": 1}}]), 422, "bogus", "Extra inputs"
    )


def test_unknown_dataset_is_422(client) -> None:  # type: ignore[no-untyped-def]
    _assert_rejected(client, batch_body(dataset="mnist"), 422, "dataset", "cifar10")


def test_dataset_without_files_is_422_at_submission(client) -> None:  # type: ignore[no-untyped-def]
    detail = _assert_rejected(client, batch_body(dataset="cifar100"), 422, "dataset", "not available")
    assert "cifar-100-python" in detail[0]["msg"]  # names the path/layout expected


def test_malformed_genotype_is_422_naming_the_item(client) -> None:  # type: ignore[no-untyped-def]
    bad = "|nor_conv_3x3~0|+|conv9~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    detail = _assert_rejected(
        client, batch_body(items=[{"genotype": NB201_A}, {"genotype": bad}]), 422, "genotype", "conv9"
    )
    assert detail[0]["loc"][:3] == ["body", "items", 1]
    assert "nor_conv_3x3" in detail[0]["msg"]  # allowed values are named


def test_item_needs_exactly_one_identity(client) -> None:  # type: ignore[no-untyped-def]
    _assert_rejected(
        client, batch_body(items=[{"genotype": NB201_A, "nb201_index": 3}]), 422, None, "exactly one"
    )
    _assert_rejected(client, batch_body(items=[{"label": "x"}]), 422, None, "exactly one")
    _assert_rejected(client, batch_body(items=[{"nb201_index": 15625}]), 422, "nb201_index", "less than")


def test_too_many_items_is_422(client) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_settings

    n = get_settings().max_items_per_batch + 1
    _assert_rejected(
        client, batch_body(items=[{"nb201_index": i % 100} for i in range(n)]), 422, "items", "at most"
    )


def test_oversized_body_is_413(client) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_settings

    big = b'{"space": "nb201", "pad": "' + b"x" * (get_settings().max_request_bytes + 10) + b'"}'
    detail = _assert_rejected(client, big, 413, None, "split the items", raw=True)
    assert detail == []


def test_limits_are_in_the_openapi_schema(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    create = schema["components"]["schemas"]["BatchCreate"]
    assert create["properties"]["items"]["maxItems"] > 0
    assert create["examples"], "request examples shown in /docs"
    assert client.get("/docs").status_code == 200


def test_ranking_ties_average_and_nonfinite_last(client, db_session) -> None:  # type: ignore[no-untyped-def]
    from app.models import BatchEvaluation, Evaluation

    data = client.post(
        "/v1/batches",
        json=batch_body(
            seed=107,
            methods=[{"name": "synflow"}],
            items=[{"nb201_index": i, "label": f"i{i}"} for i in (1, 2, 3, 4, 5)],
        ),
    ).json()
    evs = db_session.scalars(
        select(Evaluation)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .where(BatchEvaluation.batch_id == data["batch_id"])
        .order_by(Evaluation.id)
    ).all()
    for ev, value in zip(evs, [5.0, 7.0, 5.0, float("nan"), 1.0], strict=True):
        ev.status = "done"
        ev.set_score(value)
    db_session.commit()
    ranking = client.get(f"/v1/batches/{data['batch_id']}/ranking", params={"method": "synflow"}).json()
    scores = [(i["rank"], i["score"], i["score_repr"]) for i in ranking["items"]]
    assert scores == [
        (1.0, 7.0, None),
        (2.5, 5.0, None),
        (2.5, 5.0, None),
        (4.0, 1.0, None),
        (None, None, "nan"),
    ]
    assert "NaN" in ranking["items"][-1]["reason"]
    page = client.get(f"/v1/batches/{data['batch_id']}/ranking", params={"limit": 2, "offset": 1}).json()
    assert [i["rank"] for i in page["items"]] == [2.5, 2.5] and page["total"] == 5


def test_ranking_of_method_not_in_batch_is_422(client) -> None:  # type: ignore[no-untyped-def]
    data = client.post("/v1/batches", json=batch_body(seed=108)).json()
    resp = client.get(f"/v1/batches/{data['batch_id']}/ranking", params={"method": "fear"})
    assert resp.status_code == 422 and "params" in resp.text
    assert client.get("/v1/batches/nope").status_code == 404


@pytest.mark.parametrize("path", ["/v1/spaces", "/v1/methods", "/v1/datasets", "/v1/health"])
def test_catalog_endpoints(client, path: str) -> None:  # type: ignore[no-untyped-def]
    resp = client.get(path)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    if path == "/v1/methods":
        names = {m["name"] for m in body["items"]}
        assert {"fear", "shortreg", "full", "synflow", "naswot", "params", "flops"} <= names
        fear = next(m for m in body["items"] if m["name"] == "fear")
        assert {"paper", "cpu", "tiny"} <= set(fear["presets"])
    if path == "/v1/health":
        assert body["database"]["ok"] and body["broker"]["ok"]
    if path == "/v1/datasets":
        # Files are read from datasets_dir; the synthetic set is cached in the writable cache_dir.
        synthetic = next(d for d in body["items"] if d["name"] == "synthetic_cifar10")
        assert synthetic["availability"]["path"] == str(Path(body["cache_dir"]) / "synthetic")
        assert not synthetic["availability"]["path"].startswith(body["datasets_dir"])


def test_openapi_examples_cover_every_space_and_are_accepted(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The /docs examples are real requests: each one validates (datasets aside)."""
    from app.genotypes import SPACES
    from app.schemas import BatchCreate
    from app.services.submission import parse_items

    examples = client.get("/openapi.json").json()["components"]["schemas"]["BatchCreate"]["examples"]
    assert {e["space"] for e in examples} == set(SPACES)
    for example in examples:
        parse_items(BatchCreate.model_validate(example))


def test_subset_larger_than_the_dataset_is_422(client) -> None:  # type: ignore[no-untyped-def]
    body = batch_body(
        methods=[{"name": "shortreg", "preset": "tiny", "config": {"data": {"train_size": 10_000}}}]
    )
    detail = _assert_rejected(client, body, 422, "train_size", "exceeds")
    assert "200" in detail[0]["msg"]  # the tiny synthetic set has 10 classes x 20 train images


def test_unknown_unfreeze_identifier_is_422(client) -> None:  # type: ignore[no-untyped-def]
    body = batch_body(methods=[{"name": "fear", "preset": "tiny", "config": {"unfreeze": ["cells.99"]}}])
    _assert_rejected(client, body, 422, "unfreeze", "cells.99")


def test_an_option_that_does_nothing_is_accepted_with_a_warning(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/batches", json=batch_body(seed=4242, options={"ratio_to_fastest": 4.0}))
    assert resp.status_code == 201, resp.text
    assert any("ratio_to_fastest has no effect" in w for w in resp.json()["warnings"])
    with_fear = batch_body(
        seed=4243, methods=[{"name": "fear", "preset": "tiny"}], options={"ratio_to_fastest": 4.0}
    )
    resp = client.post("/v1/batches", json=with_fear)
    assert resp.status_code == 201, resp.text
    assert not any("ratio_to_fastest" in w for w in resp.json()["warnings"])
