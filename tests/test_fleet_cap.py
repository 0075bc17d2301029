"""FEAR's ratio-to-fastest cap compares within one device class: a fast GPU's time-to-threshold never
becomes the budget of a CPU run (nor a CPU's of a GPU's), and a cap in steps is kept apart from one in
seconds. Two simulated device classes, through the lifecycle functions and the worker's context."""

from __future__ import annotations

from typing import Any

from app.db import session_scope
from app.lifecycle import Claim, fastest, record_fastest
from worker.runtime import ServiceContext

H200 = "cuda NVIDIA H200"
CPU = "cpu"


def _batch(client: Any, seed: int, options: dict[str, Any]) -> str:
    resp = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [{"name": "fear", "preset": "tiny"}],
            "seed": seed,
            "options": options,
            "items": [{"nb201_index": 5000}],
        },
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["batch_id"])


def _ctx(scope: str, cap_class: str) -> ServiceContext:
    claim = Claim(0, 1, "fear", "nb201", "x", "synthetic_cifar10", 0, scope, {})
    return ServiceContext(claim, None, None, None, cap_class)  # type: ignore[arg-type]


def test_fastest_time_is_kept_per_scope_and_device_class(database: str) -> None:
    with session_scope() as s:
        assert record_fastest(s, "scope-a", H200, "seconds", 4.0)
        assert record_fastest(s, "scope-a", CPU, "seconds", 90.0)
        assert not record_fastest(s, "scope-a", H200, "seconds", 6.0)  # slower: not the fastest
        assert record_fastest(s, "scope-a", H200, "seconds", 3.0)
        assert record_fastest(s, "scope-a", H200, "steps", 120.0)
    with session_scope() as s:
        assert fastest(s, "scope-a", H200, "seconds") == 3.0
        assert fastest(s, "scope-a", CPU, "seconds") == 90.0
        assert fastest(s, "scope-a", H200, "steps") == 120.0
        assert fastest(s, "scope-a", CPU, "steps") is None
        assert fastest(s, "scope-b", H200, "seconds") is None


def test_budget_comes_from_the_same_device_class_only(client: Any) -> None:
    batch = _batch(client, 91, {"ratio_to_fastest": 2.0})
    gpu, cpu = _ctx(batch, H200), _ctx(batch, CPU)
    gpu.report_stage1_time(5.0, steps=40)
    # the CPU has no fastest time of its own yet: its first candidates are not capped by the GPU's 5 s
    assert cpu.stage1_budget_s() is None
    assert gpu.stage1_budget_s() == 10.0
    cpu.report_stage1_time(80.0, steps=40)
    cpu._budget_cache = None
    assert cpu.stage1_budget_s() == 160.0
    gpu._budget_cache = None
    assert gpu.stage1_budget_s() == 10.0
    assert gpu.stage1_budget_steps() is None  # this batch caps seconds


def test_a_cap_in_steps_uses_the_fastest_step_count(client: Any) -> None:
    batch = _batch(client, 92, {"ratio_to_fastest": 1.5, "ratio_basis": "steps"})
    gpu = _ctx(batch, H200)
    gpu.report_stage1_time(5.0, steps=40)
    assert gpu.stage1_budget_steps() == 60.0
    assert gpu.stage1_budget_s() is None
    search = _batch(client, 93, {"ratio_to_fastest": 1.5, "ratio_basis": "steps", "search_id": "fleet-s"})
    plain = _batch(client, 93, {"ratio_to_fastest": 1.5, "search_id": "fleet-s"})
    with session_scope() as s:
        from sqlalchemy import select

        from app.models import BatchMethod

        scopes = {
            b: s.scalar(select(BatchMethod.scope).where(BatchMethod.batch_id == b)) for b in (search, plain)
        }
    # the same search in steps and in seconds are two caps, never one shared fastest time
    assert scopes[search] != scopes[plain]
    ctx = _ctx(str(scopes[search]), H200)
    ctx.report_stage1_time(2.0, steps=30)
    assert ctx.stage1_budget_steps() == 45.0
