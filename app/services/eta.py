"""How long a batch still needs: a cost prior per method and preset, replaced by the measured mean
cost of the method's finished evaluations as soon as there is one, spread over the live workers that
consume the queue the work is routed to (app/services/fleet.py).

The prior is seconds per evaluation on the CPU reference machine (2 cores, torch 1 thread) for a
NAS-Bench-201-sized network; it only has to be the right order of magnitude for the first polls, and
the measured costs take over once results arrive. Pure functions: the caller reads the counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

EtaBasis = Literal["prior", "measured", "mixed"]

# seconds per evaluation, by method family and preset (reference: CPU, NB201-sized cell network)
_PRIOR_S: dict[str, dict[str, float]] = {
    "static": {"default": 0.05, "cpu": 0.05, "tiny": 0.05},
    "zero_cost": {"default": 2.0, "cpu": 1.0, "tiny": 0.3},
    "fear": {"paper": 3 * 3600.0, "cpu": 600.0, "tiny": 20.0},
    "shortreg": {"paper": 3 * 3600.0, "cpu": 600.0, "tiny": 20.0},
    "full": {"paper": 24 * 3600.0, "cpu": 1800.0, "tiny": 40.0},
}
_FAMILY_FALLBACK_S = {"static": 0.05, "zero_cost": 2.0, "training": 600.0}


def prior_cost_s(method: str, family: str, preset: str | None) -> float:
    """The prior seconds per evaluation of ``method`` (name) under ``preset``."""
    table = _PRIOR_S.get(method) or _PRIOR_S.get(family)
    if table:
        if preset in table:
            return table[preset]
        return max(table.values())  # an unknown or custom preset: assume the expensive end
    return _FAMILY_FALLBACK_S.get(family, 600.0)


@dataclass(frozen=True)
class MethodWork:
    """One method entry of a batch as the ETA sees it."""

    name: str
    family: str
    preset: str | None
    pending: int  # queued + running
    measured_mean_s: float | None  # mean cost of its finished evaluations, None if none yet


@dataclass(frozen=True)
class Eta:
    seconds: float | None
    basis: EtaBasis | None


def estimate(work: Mapping[str, MethodWork], workers: int) -> Eta:
    """Remaining evaluations × (measured mean, else prior) per method, over ``max(1, workers)``."""
    remaining = 0.0
    used: set[str] = set()
    for entry in work.values():
        if entry.pending <= 0:
            continue
        if entry.measured_mean_s is not None:
            remaining += entry.pending * entry.measured_mean_s
            used.add("measured")
        else:
            remaining += entry.pending * prior_cost_s(entry.name, entry.family, entry.preset)
            used.add("prior")
    if not used:
        return Eta(0.0, None)
    basis: EtaBasis = "mixed" if len(used) == 2 else ("measured" if "measured" in used else "prior")
    return Eta(remaining / max(1, workers), basis)


def estimate_routed(work: Mapping[str, Mapping[str, MethodWork]], consumers: Mapping[str, int]) -> Eta:
    """``work`` grouped by the queue (device class) it is routed to, each part over the live workers
    consuming that queue (``consumers``); the batch is done when its slowest part is. A worker that
    consumes two queues counts for both, so the estimate is optimistic where parts share workers."""
    parts = [estimate(part, consumers.get(cls, 0)) for cls, part in work.items()]
    timed = [p for p in parts if p.basis is not None and p.seconds is not None]
    if not timed:
        return Eta(0.0, None)
    bases = {p.basis for p in timed}
    basis: EtaBasis = bases.pop() if len(bases) == 1 else "mixed"  # type: ignore[assignment]
    return Eta(max(p.seconds for p in timed if p.seconds is not None), basis)
