"""``options.search_id``: the batches of one search share FEAR's fastest time-to-threshold (migration
0002 adds the ``searches`` table; upgrading from 0001 keeps stored rows)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import create_engine, inspect, text

from tests.conftest import PG_ADMIN, table_counts


def _fear_batch(client: Any, seed: int, **options: Any) -> dict[str, Any]:
    resp = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "fear", "preset": "tiny"}],
            "seed": seed,
            "options": options,
            "items": [{"nb201_index": 300}, {"nb201_index": 301}],
        },
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _scopes(batch_id: str) -> set[str]:
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import BatchEvaluation, Evaluation

    with session_scope() as s:
        return set(
            s.scalars(
                select(Evaluation.scope)
                .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
                .where(BatchEvaluation.batch_id == batch_id)
            )
        )


def test_batches_of_one_search_share_the_fastest_time(client) -> None:  # type: ignore[no-untyped-def]
    from app.lifecycle import Claim
    from worker.runtime import ServiceContext

    search = f"search-{uuid.uuid4().hex[:8]}"
    a = _fear_batch(client, 61, ratio_to_fastest=2.0, search_id=search)
    b = _fear_batch(client, 61, ratio_to_fastest=2.0, search_id=search)
    alone = _fear_batch(client, 61, ratio_to_fastest=2.0)
    other_ratio = _fear_batch(client, 61, ratio_to_fastest=3.0, search_id=search)
    (scope,) = _scopes(a["batch_id"])
    assert scope.startswith("search:") and len(scope) <= 32
    # the second batch of the search reuses the first one's evaluations
    assert _scopes(b["batch_id"]) == {scope} and b["evaluations"] == {"new": 0, "reused": 2, "retried": 0}
    assert _scopes(alone["batch_id"]) == {alone["batch_id"]}
    assert _scopes(other_ratio["batch_id"]) not in ({scope}, {alone["batch_id"]})

    def ctx(scope_: str) -> ServiceContext:
        claim = Claim(0, 1, "fear", "nb201", "x", "synthetic_cifar10", 61, scope_, {})
        return ServiceContext(claim, None, None, None)

    first, second = ctx(scope), ctx(scope)
    assert first.stage1_budget_s() is None  # nobody has reached the threshold yet
    first.report_stage1_time(10.0)
    first.report_stage1_time(12.0)  # slower: the fastest stays
    assert second.stage1_budget_s() == 20.0  # ratio 2 x the search's fastest
    assert ctx(alone["batch_id"]).stage1_budget_s() is None  # another batch's cap is its own


def test_bad_search_id_is_422_naming_the_field(client) -> None:  # type: ignore[no-untyped-def]
    before = table_counts()
    resp = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "fear", "preset": "tiny"}],
            "options": {"ratio_to_fastest": 2.0, "search_id": "no spaces/allowed"},
            "items": [{"nb201_index": 1}],
        },
    )
    assert resp.status_code == 422
    assert "search_id" in resp.text
    assert table_counts() == before


def test_upgrade_from_0001_keeps_rows_and_adds_searches() -> None:
    from app.migrate import upgrade

    name = f"fastarchrank_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url, "0001")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO architectures (space, key, canonical, degenerate, created_at) "
                    "VALUES ('nb201', 'k', 'c', false, now())"
                )
            )
        assert "searches" not in inspect(engine).get_table_names()
        upgrade(url)
        assert "searches" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT key FROM architectures")).scalars().all() == ["k"]
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _script_head()
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _script_head() -> str:
    from alembic.script import ScriptDirectory

    from app.migrate import alembic_config

    (head,) = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    return str(head)
