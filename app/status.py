"""The evaluation status values. Import them from ``app.lifecycle``; this module exists only so that
``app.models`` can use the enum without importing the lifecycle functions (which import the models)."""

from __future__ import annotations

from enum import StrEnum


class EvaluationStatus(StrEnum):
    """Values equal the strings stored in ``evaluations.status`` since the first schema."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    # FEAR outcomes: the threshold was never reached / stage 1 was over the ratio-to-fastest budget.
    UNMET = "unmet"
    REJECTED = "rejected"
    # The worker died too often; distinct from ``failed`` (the method itself raised).
    LOST = "lost"
    # Stopped on request (a cancelled batch, a failure budget): never started, or stopped at a
    # heartbeat with its partial progress kept.
    CANCELLED = "cancelled"


PENDING: frozenset[EvaluationStatus] = frozenset({EvaluationStatus.QUEUED, EvaluationStatus.RUNNING})
TERMINAL: frozenset[EvaluationStatus] = frozenset(set(EvaluationStatus) - PENDING)
# Outcomes a method produced (a score or a FEAR verdict), as opposed to errors.
OUTCOMES: frozenset[EvaluationStatus] = frozenset(
    {EvaluationStatus.DONE, EvaluationStatus.UNMET, EvaluationStatus.REJECTED}
)
# Ended without an outcome: asking for the evaluation again gives it another chance.
RETRYABLE: frozenset[EvaluationStatus] = frozenset(
    {EvaluationStatus.FAILED, EvaluationStatus.LOST, EvaluationStatus.CANCELLED}
)
