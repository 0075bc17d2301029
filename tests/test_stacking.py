"""Training evaluations as one stacked network (``worker.stacking``): on CPU (exact mode) every
stacked result is bitwise the evaluation run alone — scores, epoch logs, FEAR's stage-1 length and
stage 2 from the threshold snapshot — and what cannot stack runs alone."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from tests.test_fear import LocalContext, fear_config, make_data
from tests.test_stacked import MIXED, SKIP_FIRST
from tests.test_training import TensorDataset, single_thread
from worker import stacking
from worker.methods import fear, full, shortreg
from worker.methods.base import EvalRequest, MethodResult
from worker.runtime import Claim

__all__ = ["single_thread"]

NETWORK = {"C": 4, "N": 1}
SEED = 3


class StackContext(LocalContext):
    """LocalContext plus what a stack asks of the service context."""

    def __init__(self, data: TensorDataset, capped: bool = False) -> None:
        super().__init__(data)
        self.capped = capped

    def has_cap(self) -> bool:
        return self.capped


def regular_config(method: str, **overrides: Any) -> dict[str, Any]:
    from app.catalog.training import FullConfig, ShortregConfig

    model = FullConfig if method == "full" else ShortregConfig
    values: dict[str, Any] = {"epochs": 3, "batch_size": 32, "network": NETWORK, "data": {"cutout": 0}}
    values.update(overrides)
    return model.model_validate(values).model_dump(mode="json")


def claim(index: int, method: str, genotype: str, config: dict[str, Any], **kw: Any) -> Claim:
    return Claim(
        evaluation_id=100 + index,
        attempt=1,
        method=method,
        space=kw.get("space", "nb201"),
        genotype=genotype,
        dataset="tensor",
        seed=kw.get("seed", SEED),
        scope=kw.get("scope", ""),
        config=config,
    )


def alone(c: Claim, data: TensorDataset) -> MethodResult:
    request = EvalRequest(c.evaluation_id, c.method, c.space, c.genotype, c.dataset, c.seed, c.config)
    run = {"fear": fear.run, "shortreg": shortreg.run, "full": full.run}[c.method]
    return run(request, StackContext(data))


def stacked(claims: Sequence[Claim], data: TensorDataset) -> dict[int, MethodResult]:
    results: dict[int, MethodResult] = {}
    contexts = [StackContext(data) for _ in claims]

    def refuse(c: Claim) -> None:
        raise AssertionError(f"evaluation {c.evaluation_id} fell back to running alone")

    def failed(c: Claim, exc: BaseException) -> None:
        raise AssertionError(f"evaluation {c.evaluation_id} failed: {exc}")

    stacking.run_stack(
        claims,
        contexts,
        torch.device("cpu"),
        lambda c, r: results.__setitem__(c.evaluation_id, r),
        failed,
        refuse,
    )  # type: ignore[arg-type]
    return results


def same(a: MethodResult, b: MethodResult, *, cost_keys: Sequence[str]) -> None:
    """Equal in everything but the wall-clock costs and the stack's own record."""
    assert (a.status, a.reason, a.finite) == (b.status, b.reason, b.finite)
    assert a.score == b.score  # bitwise, or both None
    strip = {"stack", *cost_keys}
    assert {k: v for k, v in a.info.items() if k not in strip} == {
        k: v for k, v in b.info.items() if k not in strip
    }
    assert set(a.timings) == set(b.timings)


@pytest.mark.parametrize("method", ["shortreg", "full"])
def test_a_stack_of_regular_training_is_bitwise_each_alone(method: str) -> None:
    data = make_data()
    config = regular_config(method)
    claims = [claim(k, method, g, config) for k, g in enumerate(MIXED[:3])]
    results = stacked(claims, data)
    for c in claims:
        own = alone(c, data)
        same(results[c.evaluation_id], own, cost_keys=())
        assert results[c.evaluation_id].info["stack"] == {
            "size": 3,
            "position": claims.index(c),
            "mode": "exact",
            "wall_s": results[c.evaluation_id].info["stack"]["wall_s"],
            "evaluations": [100, 101, 102],
        }
    # Each result's cost is its share of the stack: together they are the stack's training time.
    wall = results[100].info["stack"]["wall_s"]
    train_shares = [r.timings["train_s"] for r in results.values()]
    assert math.isclose(sum(train_shares), wall, rel_tol=0.05)


def test_stacked_fear_snapshots_each_network_at_its_own_threshold_epoch() -> None:
    """Networks reach the threshold at different epochs (one never): each stops, is scored after a
    stage 2 from its own snapshot, and every figure is bitwise its standalone run's."""
    data = make_data()
    config = fear_config(threshold=0.55, max_stage1_epochs=3)
    claims = [claim(k, "fear", g, config) for k, g in enumerate(MIXED)]
    results = stacked(claims, data)
    alone_results = {c.evaluation_id: alone(c, data) for c in claims}
    for c in claims:
        same(results[c.evaluation_id], alone_results[c.evaluation_id], cost_keys=("time_to_threshold_s",))
    outcomes = [(r.status, r.info.get("stage1_epochs")) for r in alone_results.values()]
    # Meaningful only if the stack goes on after a network finished, and one never gets there.
    assert ("done", 2) in outcomes and ("done", 3) in outcomes and ("unmet", 3) in outcomes, outcomes


def test_what_cannot_stack_runs_alone() -> None:
    config = regular_config("shortreg")
    fear_window = fear_config(threshold_check_steps=4)
    claims = [
        claim(0, "shortreg", MIXED[0], config),
        claim(1, "shortreg", MIXED[1], config),
        claim(2, "shortreg", SKIP_FIRST[0], config),  # other stack key
        claim(3, "shortreg", MIXED[2], config, seed=SEED + 1),  # other data order
        claim(4, "fear", MIXED[0], fear_window),  # sliding window: alone
        claim(5, "shortreg", MIXED[3], regular_config("shortreg", epochs=2)),  # other config
        claim(6, "shortreg", MIXED[2], config),
        claim(7, "shortreg", SKIP_FIRST[1], config),
    ]
    groups = [[c.evaluation_id - 100 for c in g] for g in stacking.plan(claims, 2)]
    assert groups == [[0, 1], [2, 7], [3], [4], [5], [6]]
    assert [[c.evaluation_id - 100 for c in g] for g in stacking.plan(claims, 1)] == [[k] for k in range(8)]
    assert not stacking.stackable(claim(8, "synflow", MIXED[0], {}))


def test_fear_in_a_capped_batch_and_a_failing_stack_fall_back_to_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = make_data()
    config = fear_config()
    claims = [claim(k, "fear", g, config) for k, g in enumerate(MIXED[:2])]
    ran_alone: list[int] = []

    def run_alone(c: Claim) -> None:
        ran_alone.append(c.evaluation_id)

    def never(*_: Any) -> None:
        raise AssertionError("nothing is stored by the stack when it falls back")

    capped = [StackContext(data, capped=True) for _ in claims]
    stacking.run_stack(claims, capped, torch.device("cpu"), never, never, run_alone)  # type: ignore[arg-type]
    assert ran_alone == [100, 101]

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(stacking, "train", broken)
    ran_alone.clear()
    contexts = [StackContext(data) for _ in claims]
    stacking.run_stack(claims, contexts, torch.device("cpu"), never, never, run_alone)  # type: ignore[arg-type]
    assert ran_alone == [100, 101]


class ServiceLikeContext(StackContext):
    """Standalone runs on the worker's own dataset loader, for comparison with stored results."""

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> Any:
        from worker.engine import load_data

        return load_data(dataset, data_config)


def test_a_worker_claims_queued_evaluations_and_trains_them_as_one_stack(
    client, db_session, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """One message, ``stack_size`` 3: its evaluation and two queued ones of the batch are claimed
    and trained together; their own messages then claim nothing; each stored score is bitwise the
    evaluation run alone."""
    from app.settings import get_settings
    from tests.test_worker_e2e import _evaluations, _post
    from worker.tasks import evaluate

    monkeypatch.setenv("FASTARCHRANK_STACK_SIZE", "3")
    get_settings.cache_clear()
    try:
        batch_id = _post(
            client,
            {
                "space": "nb201",
                "dataset": "synthetic_cifar10",
                "methods": [{"name": "shortreg", "preset": "tiny"}, {"name": "fear", "preset": "tiny"}],
                "seed": 1901,
                "items": [{"genotype": g} for g in (*MIXED[:3], SKIP_FIRST[0])],
            },
        )
        evaluations = sorted(_evaluations(db_session, batch_id), key=lambda ev: ev.id)
        shortregs = [ev for ev in evaluations if ev.method == "shortreg"]
        fears = [ev for ev in evaluations if ev.method == "fear"]
        by_genotype = {ev.id: ev.architecture.canonical for ev in evaluations}
        skip_ids = {ev.id for ev in evaluations if by_genotype[ev.id] == SKIP_FIRST[0]}

        first = next(ev for ev in shortregs if ev.id not in skip_ids)
        evaluate.run([first.id])
        after = {ev.id: ev for ev in _evaluations(db_session, batch_id)}
        stacked_ids = [ev.id for ev in shortregs if ev.id not in skip_ids]
        assert {after[i].status for i in stacked_ids} == {"done"}
        assert {after[i].status for i in skip_ids} == {"queued"}  # another stack key: not taken
        assert {after[ev.id].status for ev in fears} == {"queued"}  # another method: not taken
        for position, eid in enumerate(stacked_ids):
            stack = after[eid].info["stack"]
            assert (stack["size"], stack["position"], stack["mode"]) == (3, position, "exact")
            assert stack["evaluations"] == stacked_ids
        for eid in stacked_ids[1:]:
            evaluate.run([eid])  # their own messages arrive later: claim nothing, change nothing
        again = {ev.id: ev for ev in _evaluations(db_session, batch_id)}
        assert all(
            again[i].attempts == 1 and again[i].finished_at == after[i].finished_at for i in stacked_ids
        )

        fear_first = next(ev for ev in fears if ev.id not in skip_ids)
        evaluate.run([fear_first.id])
        done = {ev.id: ev for ev in _evaluations(db_session, batch_id)}
        fear_ids = [ev.id for ev in fears if ev.id not in skip_ids]
        assert {done[i].status for i in fear_ids} <= {"done", "unmet"}
        assert all(done[i].info["stack"]["size"] == 3 for i in fear_ids)

        for eid in (stacked_ids[1], fear_ids[2]):
            ev = done[eid]
            request = EvalRequest(ev.id, ev.method, "nb201", by_genotype[eid], ev.dataset, ev.seed, ev.config)
            own = {"fear": fear.run, "shortreg": shortreg.run}[ev.method](
                request, ServiceLikeContext(make_data())
            )
            assert own.score == ev.score and own.status == ev.status, eid
            assert (
                own.info["train" if ev.method == "shortreg" else "stage1"]
                == ev.info["train" if ev.method == "shortreg" else "stage1"]
            )
    finally:
        get_settings.cache_clear()


def test_the_worker_command_takes_a_stack_size(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from app import cli

    started: list[dict[str, str]] = []

    def exec_worker(_: str, argv: list[str], env: dict[str, str]) -> None:
        started.append(env)

    monkeypatch.setattr(cli.os, "execvpe", exec_worker)
    # The command sets these in its own environment before exec: restored after the test.
    for name in ("FASTARCHRANK_STACK_SIZE", "FASTARCHRANK_DEVICE"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    try:
        assert cli.main(["worker", "--device", "cpu", "--stack", "0"]) == 2
        assert "--stack takes 1 to 64" in capsys.readouterr().err and not started
        cli.main(["worker", "--device", "cpu", "--stack", "4"])
        assert started[0]["FASTARCHRANK_STACK_SIZE"] == "4"
    finally:
        from app.settings import get_settings

        get_settings.cache_clear()


def test_the_worker_main_process_does_not_import_torch() -> None:
    """Celery's main process loads ``worker.tasks``; it forks the pool child that runs the methods and
    must stay light (no torch, never CUDA): the stacking code is imported by the task, not at load."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = "import sys, worker.tasks; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
