"""Typed views of the service's response JSON (API v1).

Every model ignores fields it does not know, so a newer server that adds fields never breaks an
older client; the fields named here are the ones the contract test checks against the server's
OpenAPI schema.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# An evaluation in one of these states will not change any more.
FINAL_STATUSES = frozenset({"done", "failed", "unmet", "rejected", "lost", "cancelled"})
PENDING_STATUSES = frozenset({"queued", "running"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StatusCounts(_Model):
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    unmet: int = 0
    rejected: int = 0
    lost: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return sum(int(v) for v in self.model_dump().values())

    @property
    def finished(self) -> int:
        return self.total - self.queued - self.running

    def __add__(self, other: StatusCounts) -> StatusCounts:
        a, b = self.model_dump(), other.model_dump()
        return StatusCounts(**{k: a[k] + b[k] for k in a})


class EvaluationCounts(_Model):
    new: int
    reused: int
    retried: int = 0


class BatchCreated(_Model):
    batch_id: str
    evaluations: EvaluationCounts
    items: int
    architectures: int
    methods: list[dict[str, Any]] = Field(default_factory=list)
    status_url: str = ""
    ranking_url: str = ""


class BatchCancelled(_Model):
    """One server batch after ``POST /v1/batches/{id}/cancel`` (cancelling again changes nothing)."""

    batch_id: str
    cancelled_at: datetime
    cancel_reason: str | None = None
    counts: StatusCounts
    stopping: int = 0
    kept_for_other_batches: int = 0


class BatchStatus(_Model):
    batch_id: str
    status: str
    space: str
    dataset: str
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    counts: StatusCounts
    methods: list[dict[str, Any]] = Field(default_factory=list)
    per_method: dict[str, StatusCounts] = Field(default_factory=dict)
    progress: list[dict[str, Any]] = Field(default_factory=list)
    timings: dict[str, Any] = Field(default_factory=dict)
    eta_s: float | None = None

    @property
    def finished(self) -> bool:
        return self.status == "done"

    @property
    def aliases(self) -> list[str]:
        return [str(m.get("alias") or m.get("name")) for m in self.methods]


class RankingItem(_Model):
    rank: float | None = None
    position: int
    label: str | None = None
    genotype: str
    index: int | None = None
    score: float | None = None
    score_repr: str | None = None
    finite: bool | None = None
    status: str
    reason: str | None = None
    cost_s: float | None = None
    evaluation_id: int | None = None  # None for a composite ranking (computed on read)
    architecture_key: str
    degenerate: bool = False
    ground_truth: float | None = None
    info: dict[str, Any] = Field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """A finished, finite score that ranks."""
        return self.status == "done" and self.score is not None and math.isfinite(self.score)


class Ranking(_Model):
    batch_id: str
    method: str
    higher_is_better: bool
    items: list[RankingItem]
    total: int
    limit: int = 0
    offset: int = 0


class ExportRow(_Model):
    """One (item, method) pair of ``export.json``: the submitted item's position and its evaluation."""

    item_position: int
    label: str | None = None
    ground_truth: float | None = None
    method: str
    method_name: str | None = None
    evaluation_id: int | None = None  # None on a composite's rows
    genotype: str
    architecture_key: str
    index: int | None = None
    status: str
    score: float | None = None
    score_kind: str | None = None
    finite: bool | None = None
    reason: str | None = None
    error: str | None = None
    cost_s: float | None = None


class Export(_Model):
    batch_id: str
    space: str
    dataset: str
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)
    methods: list[dict[str, Any]] = Field(default_factory=list)
    rows: list[ExportRow]

    @property
    def aliases(self) -> list[str]:
        return [str(m.get("alias") or m.get("name")) for m in self.methods]


class GroundTruthStored(_Model):
    batch_id: str
    set_name: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0


class GroundTruthPut(_Model):
    """What one ``put_ground_truth`` stored, over every part of the batch."""

    set_name: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = Field(0, description="values for architectures the batch does not contain (skip_unknown)")
    parts: list[GroundTruthStored] = Field(default_factory=list)


class Report(_Model):
    """A correlation report (JSON form). ``methods`` maps each method alias to its statistics
    (``spearman``, ``kendall``, ``spearman_ci``, top-% table, ...); ``raw`` keeps the full answer."""

    model_config = ConfigDict(extra="allow", frozen=True)
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)
    ground_truth: dict[str, Any] | None = None
    costs: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def spearman(self, method: str) -> float | None:
        value = self.methods.get(method, {}).get("spearman")
        return None if value is None else float(value)


class Health(_Model):
    status: str
    database: dict[str, Any] = Field(default_factory=dict)
    broker: dict[str, Any] = Field(default_factory=dict)
    workers: dict[str, Any] = Field(default_factory=dict)
    evaluations: dict[str, Any] = Field(default_factory=dict)
    limits: dict[str, Any] = Field(default_factory=dict)


class Score(_Model):
    """One submitted item's score under one method, in submission order. ``score`` is None when the
    evaluation is unfinished, unmet, rejected, failed or non-finite; ``reason`` says which and why."""

    position: int
    label: str | None
    genotype: str
    score: float | None
    status: str
    reason: str | None
    cost_s: float | None
    evaluation_id: int | None = None
    architecture_key: str | None = None


class Result(_Model):
    """What an evaluator returns for one genotype of a search."""

    genotype: str
    canonical: str
    architecture_key: str
    method: str
    status: str
    score: float | None
    reason: str | None
    cost_s: float | None
    evaluation_id: int
    batch_id: str
    higher_is_better: bool = True

    @property
    def ok(self) -> bool:
        return self.status == "done" and self.score is not None
