"""GET /v1/batches against real Postgres: order, filters, signed cursor pagination, bad input."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from app.db import session_scope
from app.models import Batch, BatchEvaluation, Evaluation
from tests.conftest import table_counts


def _post(client, owner: str, label: str, seed: int, n_items: int = 2) -> str:  # type: ignore[no-untyped-def]
    body = {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "owner": owner,
        "methods": [{"name": "params"}, {"name": "flops"}],
        "seed": seed,
        "items": [{"nb201_index": 100 + i, "label": f"{label}-{i}"} for i in range(n_items)],
    }
    resp = client.post("/v1/batches", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["batch_id"])


def _finish_one(batch_id: str) -> None:
    with session_scope() as s:
        first = s.scalar(
            BatchEvaluation.__table__.select()
            .with_only_columns(BatchEvaluation.evaluation_id)
            .where(BatchEvaluation.batch_id == batch_id)
            .limit(1)
        )
        s.execute(
            update(Evaluation)
            .where(Evaluation.id == first)
            .values(status="done", score=1.0, score_kind="finite", finite=True)
        )


def _finish(batch_id: str) -> None:
    with session_scope() as s:
        ids = [
            r
            for (r,) in s.execute(
                BatchEvaluation.__table__.select()
                .with_only_columns(BatchEvaluation.evaluation_id)
                .where(BatchEvaluation.batch_id == batch_id)
            )
        ]
        s.execute(
            update(Evaluation)
            .where(Evaluation.id.in_(ids))
            .values(status="done", score=1.0, score_kind="finite", finite=True)
        )


def _set_created(batch_id: str, when: datetime) -> None:
    with session_scope() as s:
        s.execute(update(Batch).where(Batch.id == batch_id).values(created_at=when))


def _all_pages(client, **params):  # type: ignore[no-untyped-def]
    seen, cursor = [], None
    while True:
        q = {**params, **({"cursor": cursor} if cursor else {})}
        resp = client.get("/v1/batches", params=q)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        seen.extend(data["items"])
        cursor = data["next"]
        if cursor is None:
            return seen


def test_listing_newest_first_with_entry_fields(client) -> None:  # type: ignore[no-untyped-def]
    owner = f"lab-{uuid.uuid4().hex[:6]}"
    first = _post(client, owner, "alpha", 9001)
    second = _post(client, owner, "beta", 9002, n_items=3)
    data = client.get("/v1/batches", params={"owner": owner}).json()
    assert [e["batch_id"] for e in data["items"]] == [second, first]
    entry = data["items"][0]
    assert entry["owner"] == owner and entry["space"] == "nb201" and entry["dataset"] == "synthetic_cifar10"
    assert entry["methods"] == ["params", "flops"]
    assert entry["items"] == 3
    # Nothing has started: the listing says what getBatch says (one rule, batch_view.overall_status).
    assert entry["counts"]["queued"] == 6 and entry["status"] == "queued"
    assert client.get(f"/v1/batches/{second}").json()["status"] == "queued"
    # RFC 3339 with an offset
    created = datetime.fromisoformat(entry["created_at"].replace("Z", "+00:00"))
    assert created.tzinfo is not None
    assert data["next"] is None


def test_status_label_and_time_filters(client) -> None:  # type: ignore[no-untyped-def]
    owner = f"lab-{uuid.uuid4().hex[:6]}"
    a = _post(client, owner, "Resnet_like", 9011)
    b = _post(client, owner, "cellx", 9012)
    _finish(a)

    def ids(**p):  # type: ignore[no-untyped-def]
        return [
            e["batch_id"] for e in client.get("/v1/batches", params={"owner": owner, **p}).json()["items"]
        ]

    assert ids(status="done") == [a]
    assert ids(status="running") == [b]
    assert ids(status="queued") == [b]  # nothing of b has started
    c = _post(client, owner, "half", 9013)
    _finish_one(c)  # one evaluation done, one still queued: running, no longer queued
    assert ids(status="queued") == [b] and ids(status="running") == [c, b]
    statuses = {
        e["batch_id"]: e["status"] for e in client.get("/v1/batches", params={"owner": owner}).json()["items"]
    }
    assert statuses == {a: "done", b: "queued", c: "running"}
    done_entry = client.get("/v1/batches", params={"owner": owner, "status": "done"}).json()["items"][0]
    assert done_entry["counts"]["done"] == 4 and done_entry["counts"]["queued"] == 0
    # label: case-insensitive substring of an item label; LIKE wildcards are literal
    assert ids(label="resnet_LIKE") == [a]
    assert ids(label="resnet%") == []
    assert ids(label="cellx-1") == [b]
    # the owner matches the label filter too
    assert set(
        client.get("/v1/batches", params={"label": owner}).json()["items"][0]["owner"] for _ in [0]
    ) == {owner}
    old = datetime(2020, 1, 1, tzinfo=UTC)
    _set_created(a, old)
    assert ids(created_before="2021-01-01T00:00:00Z") == [a]
    assert ids(created_after="2021-01-01T00:00:00+00:00") == [c, b]
    assert ids(created_after="2019-12-31T23:00:00-01:00", created_before="2020-01-01T00:00:01Z") == [a]


def test_cursor_pages_cover_everything_once(client) -> None:  # type: ignore[no-untyped-def]
    owner = f"lab-{uuid.uuid4().hex[:6]}"
    made = [_post(client, owner, f"p{i}", 9100 + i, n_items=1) for i in range(5)]
    # two batches share one created_at: the id breaks the tie, none is skipped or repeated
    same = datetime.now(UTC) - timedelta(hours=1)
    _set_created(made[1], same)
    _set_created(made[2], same)
    pages = []
    cursor = None
    while True:
        params = {"owner": owner, "limit": 2, **({"cursor": cursor} if cursor else {})}
        data = client.get("/v1/batches", params=params).json()
        pages.append([e["batch_id"] for e in data["items"]])
        cursor = data["next"]
        if cursor is None:
            break
    flat = [i for p in pages for i in p]
    assert sorted(flat) == sorted(made) and len(flat) == 5
    assert [len(p) for p in pages] == [2, 2, 1]
    times = [e["created_at"] for e in _all_pages(client, owner=owner, limit=2)]
    assert times == sorted(times, reverse=True)


def test_bad_cursor_is_400_naming_cursor_and_cannot_be_forged(client) -> None:  # type: ignore[no-untyped-def]
    owner = f"lab-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        _post(client, owner, f"q{i}", 9200 + i, n_items=1)
    token = client.get("/v1/batches", params={"owner": owner, "limit": 1}).json()["next"]
    assert token

    def error_loc(resp):  # type: ignore[no-untyped-def]
        body = resp.json()
        errs = body.get("errors") or body.get("detail")
        return [e["loc"] for e in errs]

    before = table_counts()
    for bad in ("garbage", "!!!", token + "x", token.split(".")[0]):
        resp = client.get("/v1/batches", params={"owner": owner, "cursor": bad})
        assert resp.status_code == 400, (bad, resp.text)
        assert ["query", "cursor"] in error_loc(resp)
    # a payload rewritten to point elsewhere (or at another owner) keeps the old signature: rejected
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    payload["t"] = "2999-01-01T00:00:00+00:00"
    forged = (
        base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        + "."
        + token.split(".")[1]
    )
    assert client.get("/v1/batches", params={"owner": owner, "cursor": forged}).status_code == 400
    # a genuine cursor used with other filters (another owner) is refused, not reinterpreted
    resp = client.get("/v1/batches", params={"owner": "someone-else", "cursor": token})
    assert resp.status_code == 400 and "other filters" in resp.text
    assert table_counts() == before


def test_bad_filters_are_422_naming_the_field(client) -> None:  # type: ignore[no-untyped-def]
    for params, field in (
        ({"status": "sideways"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-01-01T00:00:00"}, "created_before"),
    ):
        resp = client.get("/v1/batches", params=params)
        assert resp.status_code == 422, (params, resp.text)
        body = resp.json()
        errs = body.get("errors") or body.get("detail")
        assert any(e["loc"][-1] == field for e in errs), (params, body)


def test_cursor_is_bound_to_the_viewer_and_visibility_applies(client, db_session) -> None:  # type: ignore[no-untyped-def]
    """The hook access control uses: a visibility clause limits the page, and a token issued to one
    caller is refused for another."""
    import pytest

    from app.api.listing import ListingFilters, list_page
    from app.errors import InputError
    from app.settings import get_settings

    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    mine = [_post(client, alice, "a", 9300 + i, n_items=1) for i in range(2)]
    _post(client, bob, "b", 9310, n_items=1)
    settings = get_settings()
    filters = ListingFilters(label="-")  # matches every batch of this test and others
    first = list_page(db_session, settings, filters, 1, None, visible=Batch.owner == alice, viewer=alice)
    assert [e.batch_id for e in first.items] == [mine[1]] and first.next
    second = list_page(
        db_session, settings, filters, 1, first.next, visible=Batch.owner == alice, viewer=alice
    )
    assert [e.batch_id for e in second.items] == [mine[0]] and second.next is None
    with pytest.raises(InputError) as info:
        list_page(db_session, settings, filters, 1, first.next, visible=Batch.owner == bob, viewer=bob)
    assert info.value.errors[0]["loc"] == ["query", "cursor"] and info.value.status_code == 400
