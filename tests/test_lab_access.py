"""API keys wired into the service (issue 16, item 1): owners see only their batches (another
owner's batch answers exactly like a missing one), scopes gate writes, the listing and the
architecture view are filtered, and ``auth=required`` refuses anonymous requests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth.keys import CreatedKey
from app.auth.principal import Scope
from app.main import create_app
from app.settings import get_settings
from tests.auth_helpers import bearer, new_key
from tests.test_api_batches import NB201_A, batch_body

LOOPBACK = "http://127.0.0.1:8000"


@pytest.fixture
def api(database: str) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url=LOOPBACK, raise_server_exceptions=False) as c:
        yield c


def _owner() -> str:
    return f"lab-{random.randrange(10**9)}"


def _key(owner: str, *scopes: Scope) -> CreatedKey:
    return new_key(get_settings(), owner, scopes or (Scope.READ, Scope.SUBMIT))


def _post(api: TestClient, key: CreatedKey, **overrides: Any) -> str:
    overrides.setdefault("seed", random.randrange(10**9))
    body = batch_body(**overrides)
    resp = api.post("/v1/batches", json=body, headers=bearer(key))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["batch_id"])


BATCH_READS = [
    "/v1/batches/{id}",
    "/v1/batches/{id}/ranking",
    "/v1/batches/{id}/report",
    "/v1/batches/{id}/export.csv",
    "/v1/batches/{id}/export.json",
    "/v1/batches/{id}/ground_truth",
    "/v1/batches/{id}/evaluations",
]


def test_another_owners_batch_is_a_404_like_a_missing_one(api: TestClient) -> None:
    ana, bo = _key(_owner()), _key(_owner())
    admin = _key(_owner(), Scope.ADMIN)
    bid = _post(api, ana)
    assert api.get(f"/v1/batches/{bid}", headers=bearer(ana)).json()["batch_id"] == bid
    missing = "0" * 32
    for path in BATCH_READS:
        foreign = api.get(path.format(id=bid), headers=bearer(bo))
        absent = api.get(path.format(id=missing), headers=bearer(bo))
        assert foreign.status_code == absent.status_code == 404, path
        assert foreign.text.replace(bid, "ID") == absent.text.replace(missing, "ID"), path
        assert api.get(path.format(id=bid), headers=bearer(admin)).status_code == 200, path
    for method, path in (("post", "/cancel"), ("delete", "")):
        resp = api.request(method.upper(), f"/v1/batches/{bid}{path}", headers=bearer(bo))
        assert resp.status_code == 404, (method, path)
    report = api.post("/v1/reports", json={"batch_ids": [bid]}, headers=bearer(bo))
    assert report.status_code == 404
    # The owner's batch survived the attempts.
    assert api.get(f"/v1/batches/{bid}", headers=bearer(ana)).status_code == 200


def test_listing_shows_the_callers_batches_only(api: TestClient) -> None:
    ana_owner = _owner()
    ana, bo = _key(ana_owner), _key(_owner())
    admin = _key(_owner(), Scope.ADMIN)
    mine = {_post(api, ana), _post(api, ana)}
    theirs = _post(api, bo)
    listed = api.get("/v1/batches", params={"limit": 1000}, headers=bearer(ana)).json()
    assert {b["batch_id"] for b in listed["items"]} == mine
    assert {b["owner"] for b in listed["items"]} == {ana_owner}
    assert api.get("/v1/batches", params={"owner": "someone"}, headers=bearer(ana)).json()["items"] == []
    everything = api.get("/v1/batches", params={"limit": 1000}, headers=bearer(admin)).json()
    assert mine | {theirs} <= {b["batch_id"] for b in everything["items"]}

    # A cursor is bound to its viewer: another key cannot page with it.
    page = api.get("/v1/batches", params={"limit": 1}, headers=bearer(ana)).json()
    assert page["next"]
    stolen = api.get("/v1/batches", params={"limit": 1, "cursor": page["next"]}, headers=bearer(bo))
    assert stolen.status_code == 400


def test_architecture_view_shows_visible_evaluations_only(api: TestClient) -> None:
    ana, bo = _key(_owner()), _key(_owner())
    admin = _key(_owner(), Scope.ADMIN)
    seed = random.randrange(10**9)
    _post(api, ana, seed=seed, items=[{"genotype": NB201_A}])

    def seeds(key: CreatedKey) -> set[int]:
        resp = api.get("/v1/architectures/" + NB201_A, headers=bearer(key))
        assert resp.status_code == 200, resp.text
        return {e["seed"] for e in resp.json()["evaluations"]}

    assert seed in seeds(ana)
    assert seed not in seeds(bo)
    assert seed in seeds(admin)


def test_read_scope_cannot_write(api: TestClient) -> None:
    owner = _owner()
    writer, reader = _key(owner), _key(owner, Scope.READ)
    bid = _post(api, writer)
    refused = api.post("/v1/batches", json=batch_body(), headers=bearer(reader))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert api.post(f"/v1/batches/{bid}/cancel", headers=bearer(reader)).status_code == 403
    assert api.delete(f"/v1/batches/{bid}", headers=bearer(reader)).status_code == 403
    assert api.get(f"/v1/batches/{bid}", headers=bearer(reader)).status_code == 200


def test_owner_in_the_body_must_be_the_keys(api: TestClient) -> None:
    owner = _owner()
    key, admin = _key(owner), _key(_owner(), Scope.ADMIN)
    resp = api.post("/v1/batches", json=batch_body(owner="somebody-else"), headers=bearer(key))
    assert resp.status_code == 403 and "owner" in resp.json()["detail"]
    on_behalf = api.post(
        "/v1/batches", json=batch_body(seed=random.randrange(10**9), owner=owner), headers=bearer(admin)
    )
    assert on_behalf.status_code == 201
    bid = on_behalf.json()["batch_id"]
    assert api.get(f"/v1/batches/{bid}", headers=bearer(key)).json()["batch_id"] == bid


def test_idempotency_keys_are_scoped_to_the_owner(api: TestClient) -> None:
    ana, bo = _key(_owner()), _key(_owner())
    body = batch_body(seed=random.randrange(10**9))
    headers = {"Idempotency-Key": "same-key"}
    first = api.post("/v1/batches", json=body, headers={**headers, **bearer(ana)})
    replay = api.post("/v1/batches", json=body, headers={**headers, **bearer(ana)})
    other = api.post("/v1/batches", json=body, headers={**headers, **bearer(bo)})
    assert first.status_code == 201 and replay.status_code == 200
    assert replay.json()["batch_id"] == first.json()["batch_id"]
    assert other.status_code == 201 and other.json()["batch_id"] != first.json()["batch_id"]


def test_idempotency_keys_expire(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.auth import owner_scoped_idempotency_key
    from app.db import session_scope
    from app.models import IdempotencyRecord, utcnow

    owner = _owner()
    key = _key(owner)
    body = batch_body(seed=random.randrange(10**9))
    headers = {"Idempotency-Key": "expiring", **bearer(key)}
    first = api.post("/v1/batches", json=body, headers=headers).json()["batch_id"]
    ttl = get_settings().idempotency_ttl_s
    with session_scope() as s:
        s.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == owner_scoped_idempotency_key(owner, "expiring"))
            .values(created_at=utcnow() - timedelta(seconds=ttl + 60))
        )
    later = api.post("/v1/batches", json=body, headers=headers)
    assert later.status_code == 201 and later.json()["batch_id"] != first
    # The new record replays from now on.
    assert api.post("/v1/batches", json=body, headers=headers).json()["batch_id"] == later.json()["batch_id"]


def test_required_auth_refuses_anonymous_requests(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTARCHRANK_AUTH", "required")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), base_url=LOOPBACK, raise_server_exceptions=False) as c:
            for method, path in (
                ("GET", "/v1/batches"),
                ("POST", "/v1/batches"),
                ("GET", "/v1/spaces"),
            ):
                resp = c.request(method, path, json=batch_body() if method == "POST" else None)
                assert resp.status_code == 401, (path, resp.text)
                assert resp.json()["code"] == "unauthorized"
            assert c.get("/v1/health").status_code in (200, 503)  # health stays open
            key = _key(_owner())
            assert c.get("/v1/batches", headers=bearer(key)).status_code == 200
    finally:
        get_settings.cache_clear()


def test_loopback_default_needs_no_key(api: TestClient) -> None:
    bid = api.post("/v1/batches", json=batch_body(seed=random.randrange(10**9))).json()["batch_id"]
    status = api.get(f"/v1/batches/{bid}")
    assert status.status_code == 200
    # Remote callers of the same app need a key.
    with TestClient(api.app, base_url="http://10.1.2.3:8000", raise_server_exceptions=False) as remote:
        assert remote.get(f"/v1/batches/{bid}").status_code == 401


def test_cli_report_takes_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from app import cli

    args = cli.build_parser().parse_args(["report", "abc", "--api-key", "far_x_y"])
    assert args.api_key == "far_x_y"
    put = cli.build_parser().parse_args(["ground-truth", "put", "abc", "--set", "s", "--csv", "f.csv"])
    assert put.api_key is None
    monkeypatch.setenv("FASTARCHRANK_API_KEY", "far_env_key")
    client = cli._client("http://127.0.0.1:1")
    assert client.config.api_key == "far_env_key"
    assert cli._client("http://127.0.0.1:1", "far_flag").config.api_key == "far_flag"
    keys = cli.build_parser().parse_args(["keys", "list"])
    assert keys.command == "keys"
