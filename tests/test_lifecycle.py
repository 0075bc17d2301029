"""The evaluation status machine (app/lifecycle.py): it is the only writer of ``Evaluation.status``,
and each transition holds under the races it is meant for (duplicate delivery, superseded attempts,
concurrent sweepers, dead workers). Against the session's Postgres database."""

from __future__ import annotations

import ast
import os
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from app.lifecycle import (
    PENDING,
    TERMINAL,
    EvaluationSpec,
    EvaluationStatus,
    claim,
    complete,
    fail,
    heartbeat,
    lease_for_publish,
    link_or_reuse,
    mark_published,
    publish_due,
    reap,
    release_lease,
)
from app.models import Architecture, Evaluation, utcnow
from app.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
# The lifecycle module, and the enum module it re-exports, are the only writers.
ALLOWED = {ROOT / "app" / "lifecycle.py", ROOT / "app" / "status.py"}
STATUS_VALUES = {s.value for s in EvaluationStatus}
STATUS_NAMES = {s.name for s in EvaluationStatus}


# --- only app/lifecycle.py writes the status -----------------------------------------------------


def _is_status_value(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and node.value in STATUS_VALUES:
        return True
    return isinstance(node, ast.Attribute | ast.Name) and (
        (node.attr if isinstance(node, ast.Attribute) else node.id) in STATUS_NAMES
    )


def status_writes(source: str) -> list[int]:
    """Lines that write an evaluation status: ``x.status = …``, ``.values(status=…)``,
    ``Evaluation(status=…)``, or a row dict ``{"status": <a status value>}`` (bulk inserts)."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if name in ("values", "Evaluation") and any(k.arg == "status" for k in node.keywords):
                lines.append(node.lineno)
            if name == "values" and any(
                isinstance(a, ast.Dict)
                and any(isinstance(k, ast.Constant) and k.value == "status" for k in a.keys)
                for a in node.args
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "status" and _is_status_value(v):
                    lines.append(node.lineno)
    return lines


def test_the_scan_finds_each_kind_of_status_write() -> None:
    """The check below can fail: each way of writing a status is found."""
    snippets = [
        "ev.status = 'done'",
        "session.execute(update(Evaluation).values(status=QUEUED))",
        "session.add(Evaluation(status=EvaluationStatus.QUEUED))",
        "rows.append({'status': 'queued', 'attempts': 0})",
        "stmt.values({'status': x})",
    ]
    for code in snippets:
        assert status_writes(code), code
    # reading a status, or a response's HTTP status, is not a write
    assert not status_writes("if ev.status == 'done': body = {'status': 413, 'state': ev.status}")


def test_only_the_lifecycle_module_writes_evaluation_status() -> None:
    offenders = []
    for folder in ("app", "worker"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in ALLOWED:
                continue
            for line in status_writes(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert not offenders, "status written outside app/lifecycle.py: " + ", ".join(offenders)


def test_status_sets_partition_the_enum() -> None:
    assert set(EvaluationStatus) == PENDING | TERMINAL and not PENDING & TERMINAL
    # stored strings are unchanged since the first schema
    assert [s.value for s in EvaluationStatus] == [
        "queued",
        "running",
        "done",
        "failed",
        "unmet",
        "rejected",
        "lost",
        "cancelled",  # added with cancel (issue 16); the first seven never change
    ]


# --- transitions -------------------------------------------------------------------------------------


@dataclass
class Result:
    score: float | None
    status: str = "done"
    reason: str | None = None
    cost_s: float | None = 1.0
    timings: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


SPEC = EvaluationSpec("params", "h" * 64, "", {"k": 1})


@pytest.fixture
def arch_ids(db_session) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    for _ in range(3):
        a = Architecture(space="nb201", key=uuid.uuid4().hex, canonical="x")
        db_session.add(a)
        db_session.flush()
        ids.append(a.id)
    db_session.commit()
    return ids


def _seed() -> int:
    return uuid.uuid4().int % 10**9


def _get(session, eid: int) -> Evaluation:  # type: ignore[no-untyped-def]
    session.expire_all()
    ev = session.get(Evaluation, eid)
    assert ev is not None
    return ev


def test_link_or_reuse_inserts_once_then_reuses_and_retries_failed(db_session, arch_ids) -> None:  # type: ignore[no-untyped-def]
    seed = _seed()
    first = link_or_reuse(db_session, "synthetic_cifar10", seed, [SPEC], arch_ids)
    db_session.commit()
    assert len(first.new) == 3 and not first.reused and not first.retried
    assert {_get(db_session, e).status for e in first.new} == {"queued"}
    (c,) = claim(db_session, [first.new[0]], "cpu", "w/1")
    assert fail(db_session, c, "ValueError: boom", "traceback")
    db_session.commit()
    again = link_or_reuse(db_session, "synthetic_cifar10", seed, [SPEC], arch_ids)
    db_session.commit()
    assert not again.new and again.retried == [first.new[0]] and sorted(again.reused) == sorted(first.new[1:])
    ev = _get(db_session, first.new[0])
    assert ev.status == "queued" and ev.attempts == 0 and ev.error is None and ev.enqueued_at is None


def test_claim_is_exclusive_and_a_duplicate_delivery_claims_nothing(db_session, arch_ids) -> None:  # type: ignore[no-untyped-def]
    linked = link_or_reuse(db_session, "synthetic_cifar10", _seed(), [SPEC], arch_ids)
    db_session.commit()
    claims = claim(db_session, linked.new, "cpu", "node-a/11")
    db_session.commit()
    assert [c.evaluation_id for c in claims] == linked.new and {c.attempt for c in claims} == {1}
    assert claim(db_session, linked.new, "cpu", "node-b/12") == []  # the message delivered again
    db_session.commit()
    ev = _get(db_session, linked.new[0])
    assert ev.status == "running" and ev.attempts == 1 and ev.worker == "node-a/11"
    assert heartbeat(db_session, claims[0], utcnow(), {"epoch": 3})
    assert complete(db_session, [(claims[0], Result(score=float("nan")))]) == [True]
    fail(db_session, claims[1], "RuntimeError: x", "tb")
    complete(db_session, [(claims[2], Result(score=None, status="unmet", reason="never reached"))])
    db_session.commit()
    done, failed, unmet = (_get(db_session, e) for e in linked.new)
    assert done.status == "done" and done.score_kind == "nan" and done.finite is False
    assert done.reason == "non-finite score" and done.progress == {"phase": "finished"}
    assert failed.status == "failed" and failed.error == "RuntimeError: x"
    assert unmet.status == "unmet" and unmet.reason == "never reached"
    # a finished evaluation is not claimed, heart-beaten or completed again
    assert claim(db_session, linked.new, "cpu", "node-c/13") == []
    assert not heartbeat(db_session, claims[0], utcnow())
    assert complete(db_session, [(claims[0], Result(score=5.0))]) == [False]
    db_session.commit()
    assert _get(db_session, linked.new[0]).score_kind == "nan"


def test_superseded_attempt_writes_nothing(db_session, arch_ids) -> None:  # type: ignore[no-untyped-def]
    linked = link_or_reuse(db_session, "synthetic_cifar10", _seed(), [SPEC], arch_ids[:1])
    db_session.commit()
    (first,) = claim(db_session, linked.new, "cpu", "node-dead/99")
    db_session.commit()
    # the reaper decides node-dead is gone and re-queues the evaluation
    reaped = reap(db_session, get_settings(), utcnow(), dead_owners={"node-dead/99"})
    db_session.commit()
    # (other tests' running rows may be stale by now and re-queued with it)
    assert set(linked.new) <= set(reaped.requeued)
    (second,) = claim(db_session, linked.new, "cpu", "node-live/5")
    db_session.commit()
    assert second.attempt == first.attempt + 1
    assert not heartbeat(db_session, first, utcnow())
    assert complete(db_session, [(first, Result(score=1.0))]) == [False]
    assert not fail(db_session, first, "x", "y")
    assert complete(db_session, [(second, Result(score=2.0))]) == [True]
    db_session.commit()
    ev = _get(db_session, linked.new[0])
    assert ev.status == "done" and ev.score == 2.0 and ev.attempts == 2


def test_reap_requeues_stale_then_marks_lost_and_spares_live_attempts(db_session, arch_ids) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()
    linked = link_or_reuse(db_session, "synthetic_cifar10", _seed(), [SPEC], arch_ids)
    db_session.commit()
    stale, exhausted, alive = claim(db_session, linked.new, "cpu", "n/1")
    old = utcnow() - timedelta(seconds=settings.stale_after_s + 5)
    db_session.execute(
        update(Evaluation).where(Evaluation.id == stale.evaluation_id).values(heartbeat_at=old)
    )
    db_session.execute(
        update(Evaluation)
        .where(Evaluation.id == exhausted.evaluation_id)
        .values(heartbeat_at=old, attempts=settings.max_attempts)
    )
    db_session.commit()
    reaped = reap(db_session, settings, utcnow())
    db_session.commit()
    assert stale.evaluation_id in reaped.requeued and exhausted.evaluation_id in reaped.lost
    assert alive.evaluation_id not in reaped.requeued + reaped.lost
    assert _get(db_session, stale.evaluation_id).status == "queued"
    lost = _get(db_session, exhausted.evaluation_id)
    assert lost.status == "lost" and "resubmit" in (lost.error or "")
    assert _get(db_session, alive.evaluation_id).status == "running"


def test_publish_lease_expires_and_a_failed_publish_releases_it(db_session, arch_ids) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()
    linked = link_or_reuse(db_session, "synthetic_cifar10", _seed(), [SPEC], arch_ids)
    db_session.commit()
    mine = set(linked.new)

    def leased_now(at) -> set[int]:  # type: ignore[no-untyped-def]
        got = {x.evaluation_id for x in lease_for_publish(db_session, settings, 10_000, at)}
        db_session.commit()
        return got & mine

    now = utcnow()
    assert leased_now(now) == set()  # just submitted: the API publishes them itself
    later = now + timedelta(seconds=settings.requeue_after_s + 1)
    assert leased_now(later) == mine  # never published: due
    assert leased_now(later) == set()  # a second sweeper finds them leased
    release_lease(db_session, linked.new[:1], later)  # that publish failed
    db_session.commit()
    assert leased_now(later) == {linked.new[0]}
    # published but never claimed (the message was lost): due again once the lease expires,
    # whatever the broker queue holds
    mark_published(db_session, linked.new, later)
    db_session.commit()
    assert leased_now(later + timedelta(seconds=settings.publish_lease_s / 2)) == set()
    assert leased_now(later + timedelta(seconds=settings.publish_lease_s + 1)) == mine


def test_the_publish_lease_grows_with_the_wait_so_a_long_backlog_is_not_republished_every_lease(  # type: ignore[no-untyped-def]
    db_session, arch_ids
) -> None:
    settings = get_settings()
    lease, cap = settings.publish_lease_s, settings.publish_lease_max_s
    linked = link_or_reuse(db_session, "synthetic_cifar10", _seed(), [SPEC], arch_ids)
    db_session.commit()
    mine = set(linked.new)
    queued = _get(db_session, linked.new[0]).queued_at

    def leased_now(at) -> set[int]:  # type: ignore[no-untyped-def]
        got = {x.evaluation_id for x in lease_for_publish(db_session, settings, 10_000, at)}
        db_session.commit()
        return got & mine

    # One message at submission, then, never claimed (a backlog): the re-publishes of a 3-hour wait.
    mark_published(db_session, linked.new, queued)
    db_session.commit()
    sent_at = [0.0]
    for minute in range(1, 181):
        if leased_now(queued + timedelta(minutes=minute)) == mine:
            sent_at.append(minute)
    # Sweeps on whole minutes: each lease is the wait so far (strictly exceeded), capped at 60 min.
    assert sent_at == [0, 11, 23, 47, 95, 156], sent_at
    assert len(sent_at) < 180 * 60 / lease / 2, "fewer than half the messages of a fixed lease"
    # The rule itself: at least publish_lease_s, the time already waited, at most the cap.
    q = queued
    assert not publish_due(q, q, q + timedelta(seconds=lease), settings)
    assert publish_due(q, q, q + timedelta(seconds=lease + 1), settings)
    waited = q + timedelta(seconds=2 * lease)
    assert not publish_due(q, waited, waited + timedelta(seconds=1.5 * lease), settings)
    assert publish_due(q, waited, waited + timedelta(seconds=2 * lease + 1), settings)
    ages_ago = q + timedelta(days=1)
    assert publish_due(q, ages_ago, ages_ago + timedelta(seconds=cap + 1), settings), "capped"
    assert publish_due(q, None, q, settings), "never published"


def test_dead_owner_detection() -> None:
    from app.services.maintenance import dead_owners, owner_label

    settings = get_settings()
    now = utcnow()
    fresh, old = now, now - timedelta(seconds=settings.worker_dead_after_s + 1)
    me = "this-node:1"
    gone_pid = 2**22 + 12345  # above the default pid_max: no such process
    owners = {
        owner_label("live:1", 10),
        owner_label("silent:2", 20),
        owner_label(me, os.getpid()),
        owner_label(me, gone_pid),
        owner_label("no-beacon:3", 30),
        "legacy-host:44",
    }
    beacons = {"live:1": fresh, "silent:2": old, me: fresh}
    dead = dead_owners(owners, beacons, now, settings, this_node=me)
    assert dead == {owner_label("silent:2", 20), owner_label(me, gone_pid)}


def test_status_counts_use_the_enum(db_session) -> None:  # type: ignore[no-untyped-def]
    """Stored strings and enum members compare equal, so existing rows need no migration."""
    assert db_session.scalar(select(Evaluation.status).limit(1)) in (None, *STATUS_VALUES)
    assert EvaluationStatus("queued") is EvaluationStatus.QUEUED and EvaluationStatus.DONE == "done"


def test_a_worker_woken_from_suspension_judges_no_one_dead() -> None:
    """After SIGSTOP (or a paused VM) every beacon looks old to the woken worker's reaper, its own
    included: the round must not call the others dead and re-queue their running evaluations."""
    from worker.tasks import _RoundClock

    clock = _RoundClock(interval_s=30.0, dead_after_s=20.0)
    start = clock.last
    assert not clock.woke_from_suspension(start + 30.5)  # an ordinary round
    assert not clock.woke_from_suspension(start + 30.5 + 45.0)  # a slow round, within a beacon's life
    assert clock.woke_from_suspension(start + 30.5 + 45.0 + 300.0)  # stopped for minutes
    assert not clock.woke_from_suspension(start + 30.5 + 45.0 + 300.0 + 30.0)
