"""Response models of cancel and the incremental evaluation feed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.api.models import UtcDateTime
from app.schemas import StatusCounts


class BatchCancelled(BaseModel):
    batch_id: str
    cancelled_at: UtcDateTime
    cancel_reason: str | None
    counts: StatusCounts = Field(description="the batch's evaluations per status after the cancel")
    stopping: int = Field(description="running evaluations that stop at their next heartbeat")
    kept_for_other_batches: int = Field(
        description="queued or running evaluations that another live batch also uses: they go on"
    )


class EvaluationChange(BaseModel):
    evaluation_id: int
    seq: int = Field(description="change sequence of this state; larger = later")
    method: str = Field(description="the method entry's alias in this batch")
    method_name: str
    key: str
    genotype: str
    index: int | None
    status: str
    score: float | None
    score_repr: str | None
    finite: bool | None
    reason: str | None
    cost_s: float | None
    attempts: int
    device: str | None
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    pending: bool
    cancel_requested: bool
    progress: dict[str, Any]


class EvaluationChanges(BaseModel):
    items: list[EvaluationChange]
    next: str = Field(description="pass as `after` on the next poll")
    more: bool = Field(description="true: more changes are waiting; poll again at once with `next`")
