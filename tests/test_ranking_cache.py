"""Finished rankings are served from a per-process cache that never serves a stale ranking."""

from __future__ import annotations

from sqlalchemy import select

from app.services.ranking_cache import RankingCache


def _finished_batch(client, db_session, seed: int, scores: list[float]) -> str:  # type: ignore[no-untyped-def]
    """A params batch over len(scores) NB201 cells whose evaluations are stored as done with ``scores``."""
    from app.models import Architecture, BatchEvaluation, Evaluation

    batch_id = _pending_batch(client, seed, len(scores))
    evs = db_session.scalars(
        select(Evaluation)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(Architecture, Architecture.id == Evaluation.architecture_id)
        .where(BatchEvaluation.batch_id == batch_id)
        .order_by(Architecture.index)
    ).all()
    for ev, value in zip(evs, scores, strict=True):
        ev.status = "done"
        ev.attempts = 1
        ev.set_score(value)
    db_session.commit()
    return batch_id


def _labels(client, batch_id: str, **params) -> list[str]:  # type: ignore[no-untyped-def]
    body = client.get(f"/v1/batches/{batch_id}/ranking", params=params).json()
    return [item["label"] for item in body["items"]]


def test_finished_ranking_is_cached_and_pages_agree(client, db_session) -> None:  # type: ignore[no-untyped-def]
    batch_id = _finished_batch(client, db_session, seed=301, scores=[3.0, 1.0, 2.0, 5.0])
    cache = client.app.state.ranking_cache
    first = _labels(client, batch_id)
    hits = cache.hits
    assert _labels(client, batch_id) == first == ["i3", "i0", "i2", "i1"]  # the rendered page again
    assert _labels(client, batch_id, limit=2, offset=1) == ["i0", "i2"]
    assert cache.hits == hits + 1  # another page of the same listing is cut from the cached one


def test_finished_ranking_has_an_etag_and_answers_304(client, db_session) -> None:  # type: ignore[no-untyped-def]
    batch_id = _finished_batch(client, db_session, seed=304, scores=[3.0, 1.0, 2.0])
    first = client.get(f"/v1/batches/{batch_id}/ranking")
    etag = first.headers["ETag"]
    again = client.get(f"/v1/batches/{batch_id}/ranking", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag and not again.content
    other_page = client.get(
        f"/v1/batches/{batch_id}/ranking", params={"limit": 1}, headers={"If-None-Match": etag}
    )
    assert other_page.status_code == 200
    client.put(
        f"/v1/batches/{batch_id}/ground_truth/client", json={"items": [{"label": "i0", "value": 90.0}]}
    )
    changed = client.get(f"/v1/batches/{batch_id}/ranking", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.json()["items"][0]["ground_truth"] == 90.0


def test_changed_evaluation_invalidates_the_cached_ranking(client, db_session) -> None:  # type: ignore[no-untyped-def]
    from app.models import Architecture, BatchEvaluation, Evaluation

    batch_id = _finished_batch(client, db_session, seed=302, scores=[3.0, 1.0, 2.0])
    assert _labels(client, batch_id) == ["i0", "i2", "i1"]
    ev = db_session.scalars(
        select(Evaluation)
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .join(Architecture, Architecture.id == Evaluation.architecture_id)
        .where(BatchEvaluation.batch_id == batch_id, Architecture.index == 2)
    ).one()
    # A new attempt re-queues it: the ranking is live again and shows it pending.
    ev.status = "queued"
    ev.attempts = 2
    db_session.commit()
    body = client.get(f"/v1/batches/{batch_id}/ranking").json()
    assert [i["status"] for i in body["items"]][-1] == "queued"
    # It finishes with a better score: the next ranking puts it first.
    ev.status = "done"
    ev.set_score(9.0)
    db_session.commit()
    assert _labels(client, batch_id) == ["i2", "i0", "i1"]
    # A score rewritten by hand (same attempts, same status) is seen too.
    ev.set_score(0.5)
    db_session.commit()
    assert _labels(client, batch_id) == ["i0", "i1", "i2"]


def test_ground_truth_put_after_caching_shows_at_once(client, db_session) -> None:  # type: ignore[no-untyped-def]
    batch_id = _finished_batch(client, db_session, seed=303, scores=[3.0, 1.0])
    before = client.get(f"/v1/batches/{batch_id}/ranking").json()["items"]
    assert [i["ground_truth"] for i in before] == [None, None]
    resp = client.put(
        f"/v1/batches/{batch_id}/ground_truth/client", json={"items": [{"label": "i0", "value": 93.5}]}
    )
    assert resp.status_code in (200, 201), resp.text
    after = client.get(f"/v1/batches/{batch_id}/ranking").json()["items"]
    assert [i["ground_truth"] for i in after] == [93.5, None]


def test_cache_is_bounded_by_rows_and_evicts_least_recently_used() -> None:
    cache = RankingCache(max_rows=5)
    fp = (1,)
    cache.put(("a", 1), fp, [{"x": i} for i in range(3)])
    cache.put(("b", 1), fp, [{"x": i} for i in range(2)])
    assert cache.get(("a", 1), fp) is not None  # a is now the most recently used
    cache.put(("c", 1), fp, [{"x": 0}])
    assert cache.get(("b", 1), fp) is None and cache.get(("a", 1), fp) is not None
    cache.put(("big", 1), fp, [{"x": i} for i in range(6)])  # larger than the whole cache: not kept
    assert cache.get(("big", 1), fp) is None
    assert cache.get(("a", 1), None) is None  # a pending ranking (no fingerprint) is never served
    assert RankingCache(max_rows=0).get(("a", 1), fp) is None


def _pending_batch(client, seed: int, n: int) -> str:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "params"}],
            "seed": seed,
            "items": [{"nb201_index": i, "label": f"i{i}"} for i in range(n)],
        },
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["batch_id"])


def test_pending_ranking_answers_304_until_a_lifecycle_change(client, db_session) -> None:  # type: ignore[no-untyped-def]
    """A live ranking is keyed by the batch's version: an unchanged poll is a 304, and every
    transition the page shows (claim, result) is seen by the next poll, in every batch that shares
    the evaluation — and only there."""
    from app import batch_versions
    from app.lifecycle import claim, complete
    from app.models import BatchEvaluation
    from tests.test_lifecycle import Result

    seed = 306
    first = _pending_batch(client, seed, 3)
    shared = _pending_batch(client, seed, 2)  # the same identities for i0, i1: linked, not new
    other = _pending_batch(client, seed + 1, 2)
    page = client.get(f"/v1/batches/{first}/ranking")
    etag = page.headers["ETag"]
    assert page.json()["partial"] is True
    assert client.get(f"/v1/batches/{first}/ranking", headers={"If-None-Match": etag}).status_code == 304

    before = {b: batch_versions.version(db_session, b) for b in (first, shared, other)}
    eid = db_session.scalars(
        select(BatchEvaluation.evaluation_id)
        .where(BatchEvaluation.batch_id == shared)
        .order_by(BatchEvaluation.evaluation_id)
    ).first()
    (c,) = claim(db_session, [eid], "cpu", "node/1")
    db_session.commit()
    after_claim = {b: batch_versions.version(db_session, b) for b in (first, shared, other)}
    assert after_claim[first] > before[first] and after_claim[shared] > before[shared]
    assert after_claim[other] == before[other]  # not linked: its cached pages stay valid

    polled = client.get(f"/v1/batches/{first}/ranking", headers={"If-None-Match": etag})
    assert polled.status_code == 200 and polled.headers["ETag"] != etag
    assert "running" in {i["status"] for i in polled.json()["items"]}
    complete(db_session, [(c, Result(score=7.0))])
    db_session.commit()
    body = client.get(f"/v1/batches/{shared}/ranking").json()
    assert [i["score"] for i in body["items"] if i["status"] == "done"] == [7.0]


def test_a_rolled_back_change_bumps_nothing(db_session) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from app import batch_versions

    batch_id = uuid.uuid4().hex

    batch_versions.touch_batch(db_session, batch_id)
    db_session.rollback()
    db_session.commit()
    assert batch_versions.version(db_session, batch_id) == 0
    batch_versions.touch_batch(db_session, batch_id)
    db_session.commit()
    assert batch_versions.version(db_session, batch_id) == 1


def test_version_memo_expires_and_forgets_on_a_local_commit(db_session) -> None:  # type: ignore[no-untyped-def]
    """A ranking read reuses a batch's version for ``ttl_s``; a commit in this process that bumps it
    makes the memo forget it at once (read-your-writes), another process's change within the TTL."""
    import time
    import uuid

    from app import batch_versions
    from app.services.ranking_cache import VersionCache

    memo = VersionCache(ttl_s=0.2)
    batch_versions.subscribe(memo)
    batch_id = uuid.uuid4().hex
    memo.put(batch_id, "alice", 3)
    assert memo.get(batch_id) == ("alice", 3)
    batch_versions.touch_batch(db_session, batch_id)
    db_session.commit()
    assert memo.get(batch_id) is None  # forgotten by the commit's announcement
    memo.put(batch_id, "alice", 4)
    time.sleep(0.25)
    assert memo.get(batch_id) is None  # expired
    off = VersionCache(ttl_s=0)
    off.put(batch_id, "alice", 4)
    assert off.get(batch_id) is None
