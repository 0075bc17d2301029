"""What every local (service-less) RunContext of the benchmarks shares: no progress, no FEAR cap."""

from __future__ import annotations

from typing import Any


class OfflineRunMixin:
    """Progress is dropped and the ratio-to-fastest cap never applies outside a batch."""

    def progress(self, **fields: Any) -> None:
        pass

    def stage1_budget_s(self) -> float | None:
        return None

    def report_stage1_time(self, seconds: float) -> None:
        pass
