"""Every error a client can meet arrives as RFC 9457 problem details naming the field and the fix,
and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import table_counts
from tests.test_api_batches import NB201_A, batch_body

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "errors"}


def assert_problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert set(body) == PROBLEM_KEYS, body
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert "Traceback" not in resp.text
    return body  # type: ignore[no-any-return]


def test_validation_error_has_field_list(client) -> None:  # type: ignore[no-untyped-def]
    body = assert_problem(client.post("/v1/batches", json=batch_body(seed="x")), 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "seed"]
    assert "seed" in body["detail"]


def test_unknown_route_and_method(client) -> None:  # type: ignore[no-untyped-def]
    assert "/v1/nope" in assert_problem(client.get("/v1/nope"), 404, "not_found")["detail"]
    body = assert_problem(client.delete("/v1/spaces"), 405, "method_not_allowed")
    assert "DELETE" in body["detail"]


def test_unknown_batch_is_404(client) -> None:  # type: ignore[no-untyped-def]
    body = assert_problem(client.get("/v1/batches/doesnotexist"), 404, "not_found")
    assert "doesnotexist" in body["detail"]


def test_chunked_over_limit_body_is_413(client) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_settings

    limit = get_settings().max_request_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"space": "nb201", "pad": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    before = table_counts()
    resp = client.post("/v1/batches", content=chunks(), headers={"content-type": "application/json"})
    assert "split the items" in assert_problem(resp, 413, "payload_too_large")["detail"]
    assert table_counts() == before


def test_non_json_content_type_is_415_and_named(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/batches", content=json.dumps(batch_body()), headers={"content-type": "text/plain"}
    )
    body = assert_problem(resp, 415, "unsupported_media_type")
    assert "text/plain" in body["detail"] and "application/json" in body["detail"]


def test_non_utf8_body_is_400(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/batches", content=b'{"space": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert "UTF-8" in assert_problem(resp, 400, "bad_request")["detail"]


def test_unexpected_error_is_500_without_internals(database: str) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app()

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    with TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
        body = assert_problem(c.get("/v1/boom"), 500, "internal_error")
        assert "secret" not in json.dumps(body)
        assert c.get("/v1/spaces").status_code == 200


@pytest.mark.parametrize(
    ("item", "loc_end", "text"),
    [
        ({"genotype": NB201_A, "ground_truth": float("nan")}, "ground_truth", "finite number"),
        ({"genotype": NB201_A[:10] + "\x00" + NB201_A[10:]}, "genotype", "NUL byte"),
        ({"genotype": "x" * 5000}, "genotype", "limit is"),
    ],
)
def test_bad_items_name_the_field(client, item, loc_end, text) -> None:  # type: ignore[no-untyped-def]
    before = table_counts()
    raw = json.dumps(batch_body(items=[item]), allow_nan=True)
    resp = client.post("/v1/batches", content=raw, headers={"content-type": "application/json"})
    body = assert_problem(resp, 422, "validation_error")
    assert body["errors"][0]["loc"][-1] == loc_end, body
    assert text in body["errors"][0]["msg"], body
    assert table_counts() == before


def test_non_ascii_idempotency_key_is_rejected(client) -> None:  # type: ignore[no-untyped-def]
    before = table_counts()
    resp = client.post(
        "/v1/batches",
        json=batch_body(seed=701),
        headers={"Idempotency-Key": "clé-1".encode()},
    )
    body = assert_problem(resp, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["header", "idempotency-key"], body
    assert table_counts() == before


def _batch(client, seed: int) -> str:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/batches", json=batch_body(seed=seed))
    assert resp.status_code == 201, resp.text
    return resp.json()["batch_id"]  # type: ignore[no-any-return]


def test_ground_truth_set_names_and_items_are_checked(client) -> None:  # type: ignore[no-untyped-def]
    bid = _batch(client, 702)
    good = {"items": [{"genotype": NB201_A, "value": 90.0}]}
    body = assert_problem(
        client.put(f"/v1/batches/{bid}/ground_truth/a%20b", json=good), 422, "validation_error"
    )
    assert body["errors"][0]["loc"] == ["path", "set_name"]
    both = {"items": [{"genotype": NB201_A, "nb201_index": 1462, "value": 90.0}]}
    body = assert_problem(
        client.put(f"/v1/batches/{bid}/ground_truth/mine", json=both), 422, "validation_error"
    )
    assert "exactly one" in body["errors"][0]["msg"]
    nan = json.dumps({"items": [{"genotype": NB201_A, "value": float("nan")}]})
    resp = client.put(
        f"/v1/batches/{bid}/ground_truth/mine", content=nan, headers={"content-type": "application/json"}
    )
    assert "finite number" in assert_problem(resp, 422, "validation_error")["errors"][0]["msg"]


def test_cross_batch_report_error_names_the_batch(client) -> None:  # type: ignore[no-untyped-def]
    first = _batch(client, 703)
    other = client.post(
        "/v1/batches", json=batch_body(seed=704, methods=[{"name": "params"}, {"name": "flops"}])
    ).json()["batch_id"]
    resp = client.post("/v1/reports", json={"batch_ids": [first, other], "ground_truth": "nosuchset"})
    body = assert_problem(resp, 422, "validation_error")
    assert first in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "ground_truth"]  # a body field here, not a query one
    resp = client.post("/v1/reports", json={"batch_ids": [first], "methods": ["nosuch"]})
    assert assert_problem(resp, 422, "validation_error")["errors"][0]["loc"][:2] == ["body", "methods"]


def _unreachable_db_app() -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from app.api.deps import get_session
    from app.main import create_app

    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:9/none", connect_args={"connect_timeout": 2}
    )
    maker = sessionmaker(bind=engine)

    def dead_session() -> Iterator[Any]:
        session = maker()
        try:
            yield session
        finally:
            session.close()

    app = create_app()
    app.dependency_overrides[get_session] = dead_session
    return app


def test_database_outage_is_503_with_retry_after(database: str) -> None:
    from fastapi.testclient import TestClient

    with TestClient(
        _unreachable_db_app(), base_url="http://127.0.0.1:8000", raise_server_exceptions=False
    ) as c:
        resp = c.get("/v1/batches/abc")
        body = assert_problem(resp, 503, "service_unavailable")
        assert "database" in body["detail"]
        assert int(resp.headers["Retry-After"]) > 0
        health = c.get("/v1/health")
        assert health.status_code == 503 and health.json()["down"] == ["database"]
        assert c.get("/v1/spaces").status_code == 200  # the client keeps working


def test_broker_outage_shows_in_health(database: str) -> None:
    from fastapi.testclient import TestClient

    from app.api.deps import request_settings
    from app.main import create_app
    from app.settings import Settings

    app = create_app()
    dead = Settings(broker_url="redis://127.0.0.1:9/0")
    app.dependency_overrides[request_settings] = lambda: dead
    with TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
        health = c.get("/v1/health")
        assert health.status_code == 503, health.text
        assert health.json()["down"] == ["broker"] and health.headers["Retry-After"]


def test_submit_during_a_database_outage_is_503(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    import app.db

    app_ = _unreachable_db_app()
    dead = sessionmaker(
        bind=create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:9/none", connect_args={"connect_timeout": 2}
        )
    )
    before = table_counts()
    with TestClient(app_, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
        monkeypatch.setattr(app.db, "get_sessionmaker", lambda: dead)
        resp = c.post("/v1/batches", json=batch_body(seed=705))
        monkeypatch.undo()
        assert_problem(resp, 503, "service_unavailable")
        assert resp.headers["Retry-After"]
    assert table_counts() == before
