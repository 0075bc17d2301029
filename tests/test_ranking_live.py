"""A live (pending) ranking is computed by the database; it must list exactly what the Python
ranking (rank_rows, the reference used for finished rankings) lists, page by page."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

# (status, score) per item; items 8 and 9 name the same architecture as items 0 and 1
OUTCOMES = [
    ("done", 3.0),
    ("done", 1.0),
    ("done", 3.0),
    ("done", math.nan),
    ("done", math.inf),
    ("done", -math.inf),
    ("unmet", None),
    ("queued", None),
    ("running", None),
    ("failed", None),
    ("done", 2.0),
    ("lost", None),
    ("done", None),
]


def _mixed_batch(client, db_session, seed: int) -> str:  # type: ignore[no-untyped-def]
    from app.models import Architecture, BatchEvaluation, Evaluation

    items = [{"nb201_index": i, "label": f"i{i}"} for i in range(len(OUTCOMES))]
    items += [{"nb201_index": 0, "label": "dup0"}, {"nb201_index": 1, "label": "dup1"}]
    data = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}],
            "seed": seed,
            "items": items,
        },
    ).json()
    evs = db_session.scalars(
        select(Evaluation)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(Architecture, Architecture.id == Evaluation.architecture_id)
        .where(BatchEvaluation.batch_id == data["batch_id"])
        .order_by(Architecture.index)
    ).all()
    for ev, (status, score) in zip(evs, OUTCOMES, strict=True):
        ev.status = status
        ev.attempts = 1
        ev.set_score(score)
    db_session.commit()
    return str(data["batch_id"])


def _reference(batch_id: str, higher: bool) -> list[tuple]:  # type: ignore[type-arg]
    from app.auth import LOCAL_PRINCIPAL
    from app.db import session_scope
    from app.services import batch_view
    from app.services.reports.ranking import rank_rows

    with session_scope() as session:
        batch = batch_view.get_batch(session, batch_id, LOCAL_PRINCIPAL)
        rows = batch_view.method_rows(session, batch, batch.methods[0])
    for r in rows:
        r["detail"] = r.pop("reason")
    return [(r["label"], r["rank"], r["position"], r["status"], r["reason"]) for r in rank_rows(rows, higher)]


@pytest.mark.parametrize("higher", [True, False])
def test_live_page_matches_the_python_ranking(client, db_session, higher: bool) -> None:  # type: ignore[no-untyped-def]
    from app.auth import LOCAL_PRINCIPAL
    from app.db import session_scope
    from app.services import batch_view
    from app.services.ranking_sql import live_page

    batch_id = _mixed_batch(client, db_session, seed=901 if higher else 902)
    expected = _reference(batch_id, higher)
    got = []
    with session_scope() as session:
        batch = batch_view.get_batch(session, batch_id, LOCAL_PRINCIPAL)
        for offset in range(0, len(expected) + 3, 4):
            page, total, pending = live_page(session, batch, batch.methods[0], higher, 4, offset)
            assert total == len(expected) and pending == 2
            got += [(r["label"], r["rank"], r["position"], r["status"], r["reason"]) for r in page]
    assert got == expected


def test_pending_ranking_through_the_api(client, db_session) -> None:  # type: ignore[no-untyped-def]
    batch_id = _mixed_batch(client, db_session, seed=903)
    body = client.get(f"/v1/batches/{batch_id}/ranking", params={"limit": 5, "offset": 0}).json()
    assert body["partial"] is True and body["n_pending"] == 2 and body["total"] == 15
    assert [i["label"] for i in body["items"]] == ["i0", "i2", "dup0", "i10", "i1"]
    assert [i["rank"] for i in body["items"]] == [2.0, 2.0, 2.0, 4.0, 5.5]
    assert "ETag" not in body
