"""The embedded default's database (SQLite) runs the same cancel, budget and change-sequence
transitions: migrated from 0003, its change counter orders every transition."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import make_engine
from app.lifecycle import (
    EvaluationSpec,
    cancel_batch,
    claim,
    delete_unshared_evaluations,
    fail,
    heartbeat,
    link_or_reuse,
)
from app.migrate import upgrade
from app.models import Architecture, Batch, BatchEvaluation, BatchMethod, Evaluation, utcnow


def _batch(session: Session, batch_id: str, arch_ids: list[int], options: dict[str, int]) -> list[int]:
    session.add(
        Batch(
            id=batch_id, owner="local", space="nb201", dataset="d", seed=1, options=options, request_hash="h"
        )
    )
    method = BatchMethod(
        batch_id=batch_id, position=0, alias="m", name="params", config={}, config_hash="c", scope=""
    )
    session.add(method)
    session.flush()
    linked = link_or_reuse(session, "d", 1, [EvaluationSpec("params", "c", "", {})], arch_ids)
    ids = [linked.ids[(0, a)] for a in arch_ids]
    session.add_all(
        BatchEvaluation(batch_id=batch_id, batch_method_id=method.id, evaluation_id=e) for e in ids
    )
    session.flush()
    return ids


def _seqs(session: Session, ids: list[int]) -> dict[int, int]:
    return dict(
        session.execute(select(Evaluation.id, Evaluation.updated_seq).where(Evaluation.id.in_(ids))).all()
    )  # type: ignore[arg-type]


def test_cancel_budget_and_change_sequence_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url, "0003")
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s, s.begin():
        archs = [Architecture(space="nb201", key=f"k{i}", canonical=f"c{i}") for i in range(4)]
        s.add_all(archs)
        s.flush()
        ids = _batch(s, "b1", [a.id for a in archs], {"max_failed": 1})
        first = _seqs(s, ids)
        assert len(set(first.values())) == 1 and min(first.values()) > 0  # one statement, one value

        c1, c2 = claim(s, ids[:2], "cpu", "n/1")
        after_claim = _seqs(s, ids)
        assert after_claim[ids[0]] > first[ids[0]] and after_claim[ids[2]] == first[ids[2]]

        # One failure exhausts the budget: the queued rest is cancelled, the running one goes on.
        assert fail(s, c1, "RuntimeError: x", "tb")
        status = dict(s.execute(select(Evaluation.id, Evaluation.status).where(Evaluation.id.in_(ids))).all())
        assert [status[i] for i in ids] == ["failed", "running", "cancelled", "cancelled"]
        assert s.get(Batch, "b1").cancel_reason == "failure budget exhausted"  # type: ignore[union-attr]
        assert heartbeat(s, c2, utcnow()) is True

        # An explicit cancel then stops the running one at its heartbeat.
        cancelled = cancel_batch(s, "b1")
        assert cancelled.stopping == [ids[1]] and cancelled.cancelled == []
        assert heartbeat(s, c2, utcnow(), {"phase": "epoch", "epoch": 2}) is False
        ev = s.get(Evaluation, ids[1])
        assert ev is not None and ev.status == "cancelled" and ev.progress["epoch"] == 2
        seqs = _seqs(s, ids)
        assert seqs[ids[1]] == max(seqs.values())

        assert delete_unshared_evaluations(s, "b1") == 4
    engine.dispose()


def test_reaper_sees_a_dead_worker_on_sqlite(tmp_path: Path) -> None:
    """SQLite hands back naive timestamps; the embedded default's reaper compared them with an aware
    ``utcnow()`` and failed every round, so a dead worker's evaluation was never re-queued."""
    from datetime import timedelta

    from app.lifecycle import reap
    from app.models import WorkerSeen
    from app.services.maintenance import dead_owners, owner_label
    from app.settings import get_settings

    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url)
    engine = make_engine(url)
    settings = get_settings()
    old = utcnow() - timedelta(seconds=settings.worker_dead_after_s + 5)
    with Session(engine) as s, s.begin():
        archs = [Architecture(space="nb201", key="k0", canonical="c0")]
        s.add_all(archs)
        s.flush()
        (eid,) = _batch(s, "b1", [archs[0].id], {})
        s.add(WorkerSeen(name="gone:1", started_at=old, last_seen=old))
        claim(s, [eid], "cpu", owner_label("gone:1", 7))
    with Session(engine) as s, s.begin():
        beacons = {n: t for n, t in s.execute(select(WorkerSeen.name, WorkerSeen.last_seen))}
        assert all(t.tzinfo is not None for t in beacons.values())  # aware, as on PostgreSQL
        now = utcnow()
        dead = dead_owners({owner_label("gone:1", 7)}, beacons, now, settings, this_node="here:1")
        assert dead == {owner_label("gone:1", 7)}
        reaped = reap(s, settings, now, dead)
        assert reaped.requeued == [eid]
        ev = s.get(Evaluation, eid)
        assert ev is not None and ev.status == "queued" and ev.queued_at.tzinfo is not None
