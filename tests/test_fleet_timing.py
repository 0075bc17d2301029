"""Timing that means something: the warm-up before a timed stage 1 (forced on CPU here) changes no
result, the sliding threshold window is a device-side running sum equal to summing the window, and
a cap in optimizer steps rejects by steps."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from app.settings import get_settings
from tests.test_fear import LocalContext, fear_config, make_data, run_fear
from tests.test_training import TickClock, single_thread
from worker.methods import fear
from worker.training import SlidingHits

__all__ = ["single_thread"]


def test_sliding_window_running_sum_equals_the_sum_of_the_window() -> None:
    gen = torch.Generator().manual_seed(3)
    size = 7
    window = SlidingHits(size, torch.device("cpu"))
    history: list[tuple[float, int]] = []
    for step in range(40):
        n = 16 if step % 5 else 9  # a partial batch now and then
        hits = torch.randint(0, n + 1, (), generator=gen)
        # mixup's fractional hits too
        value = hits.double() * 0.75 if step % 3 == 0 else hits
        window.push(value, n)
        history.append((float(value), n))
        expected = None
        if len(history) >= size:
            last = history[-size:]
            expected = sum(h for h, _ in last) / sum(k for _, k in last)
        got = window.accuracy()
        assert (got is None) == (expected is None)
        if expected is not None:
            assert got == pytest.approx(expected, rel=1e-12)


@pytest.fixture
def warmup_mode(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_mode(mode: str) -> None:
        monkeypatch.setenv("FASTARCHRANK_WARMUP", mode)
        get_settings.cache_clear()

    yield set_mode
    monkeypatch.delenv("FASTARCHRANK_WARMUP", raising=False)
    get_settings.cache_clear()


def test_forced_warm_up_changes_no_result_and_runs_once_per_process(warmup_mode: Any) -> None:
    config = fear_config(threshold=0.3)
    warmup_mode("off")
    plain = run_fear(LocalContext(make_data()), config, clock=TickClock())
    assert "warmup_s" not in plain.timings
    warmup_mode("always")
    fear._WARMED.clear()
    warmed = run_fear(LocalContext(make_data()), config, clock=TickClock())
    assert "warmup_s" in warmed.timings
    # Same weights, same data order, same random streams: the warm-up ran on a copy.
    assert warmed.score == plain.score
    assert warmed.info["stage1"] == plain.info["stage1"] and warmed.info["stage2"] == plain.info["stage2"]
    assert warmed.timings["stage1_s"] == plain.timings["stage1_s"]
    again = run_fear(LocalContext(make_data()), config, clock=TickClock())
    assert "warmup_s" not in again.timings  # once per (space, batch sizes, precision) per process
    assert again.score == plain.score


class StepsContext(LocalContext):
    """A context whose cap is in optimizer steps (what ServiceContext does for ratio_basis=steps)."""

    def __init__(self, budget_steps: float | None) -> None:
        super().__init__(make_data())
        self.budget_steps = budget_steps
        self.reported_steps: list[int | None] = []

    def stage1_budget_s(self) -> float | None:
        return None

    def stage1_budget_steps(self) -> float | None:
        return self.budget_steps

    def report_stage1_time(self, seconds: float, steps: int | None = None) -> None:
        super().report_stage1_time(seconds)
        self.reported_steps.append(steps)


def test_a_cap_in_steps_rejects_by_steps_and_reports_steps_to_threshold() -> None:
    free = StepsContext(None)
    done = run_fear(free, fear_config(threshold=0.3), clock=TickClock())
    assert done.status == "done"
    steps = done.info["steps_to_threshold"]
    assert free.reported_steps == [steps] and steps > 0
    capped = StepsContext(float(steps))
    slow = run_fear(capped, fear_config(threshold=0.99), clock=TickClock())
    assert slow.status == "rejected"
    assert "steps" in (slow.reason or "")
    # stopped by the first check past the budget (checks every CHECK_EVERY_STEPS steps)
    assert steps < slow.info["stage1_steps"] <= steps + fear.CHECK_EVERY_STEPS
