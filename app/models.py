"""ORM models (SQLAlchemy 2.0 typed mappings). The database is the source of truth for results."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.status import PENDING as _PENDING
from app.status import TERMINAL as _TERMINAL
from app.status import EvaluationStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Status names kept for modules that have not moved to ``app.lifecycle`` yet; the enum is the source.
QUEUED = EvaluationStatus.QUEUED
RUNNING = EvaluationStatus.RUNNING
DONE = EvaluationStatus.DONE
FAILED = EvaluationStatus.FAILED
UNMET = EvaluationStatus.UNMET
REJECTED = EvaluationStatus.REJECTED
LOST = EvaluationStatus.LOST
CANCELLED = EvaluationStatus.CANCELLED
STATUSES = tuple(EvaluationStatus)
PENDING = tuple(_PENDING)
TERMINAL = tuple(_TERMINAL)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is timezone-aware UTC on the way in and out, on every dialect. SQLite has no
    timezone type: it stores the wall time and hands back naive values, which then fail every
    comparison with ``utcnow()`` (the reaper's beacon check did, on the embedded default)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Architecture(Base):
    __tablename__ = "architectures"
    __table_args__ = (UniqueConstraint("space", "key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    space: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(128))
    canonical: Mapped[str] = mapped_column(Text)
    index: Mapped[int | None] = mapped_column(Integer)
    iso_key: Mapped[str | None] = mapped_column(String(256))
    degenerate: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    space: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_hash: Mapped[str] = mapped_column(String(64))
    # FEAR ratio-to-fastest: the fastest time-to-threshold seen so far among this batch's FEAR runs.
    fastest_stage1_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Set once by a cancel (or an exhausted failure budget): the batch no longer keeps shared
    # evaluations alive. Written only by app.lifecycle.
    cancelled_at: Mapped[datetime | None] = mapped_column()
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    methods: Mapped[list[BatchMethod]] = relationship(back_populates="batch", order_by="BatchMethod.position")


class Search(Base):
    """FEAR's ratio-to-fastest cap shared by every batch submitted with one ``options.search_id`` (and
    one ratio): their capped evaluations are scoped to the search instead of to one batch."""

    __tablename__ = "searches"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # = evaluations.scope
    search_id: Mapped[str] = mapped_column(String(128))
    ratio_to_fastest: Mapped[float] = mapped_column(Float)
    ratio_basis: Mapped[str | None] = mapped_column(String(16))  # "seconds" (NULL: older rows) or "steps"
    fastest_stage1_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BatchMethod(Base):
    """One method entry of a batch with its resolved effective config."""

    __tablename__ = "batch_methods"
    __table_args__ = (UniqueConstraint("batch_id", "alias"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    alias: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(32))
    preset: Mapped[str | None] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column()
    config_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(32), default="")

    batch: Mapped[Batch] = relationship(back_populates="methods")


class BatchItem(Base):
    __tablename__ = "batch_items"
    __table_args__ = (Index("ix_batch_items_batch_position", "batch_id", "position"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    architecture_id: Mapped[int] = mapped_column(ForeignKey("architectures.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(256))
    ground_truth: Mapped[float | None] = mapped_column(Float)

    architecture: Mapped[Architecture] = relationship()


class GroundTruth(Base):
    """Named ground-truth accuracies per architecture of a batch (e.g. ``nb201-cifar10-test-200ep``)."""

    __tablename__ = "ground_truths"
    __table_args__ = (UniqueConstraint("batch_id", "set_name", "architecture_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    set_name: Mapped[str] = mapped_column(String(128))
    architecture_id: Mapped[int] = mapped_column(ForeignKey("architectures.id"))
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Evaluation(Base):
    """One (architecture, dataset, method, effective config, seed[, scope]) computation, shared by
    every batch that asks for it. ``scope`` is empty except where the outcome depends on the batch
    (FEAR with a ratio-to-fastest cap is scoped to its batch)."""

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint("architecture_id", "dataset", "method", "config_hash", "seed", "scope"),
        Index("ix_evaluations_status_queued_at", "status", "queued_at"),
        Index("ix_evaluations_status_heartbeat_at", "status", "heartbeat_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    architecture_id: Mapped[int] = mapped_column(ForeignKey("architectures.id"))
    dataset: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    config_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(String(32), default="")
    config: Mapped[dict[str, Any]] = mapped_column()

    # Written only by app.lifecycle (tests/test_lifecycle.py checks it).
    status: Mapped[str] = mapped_column(String(16), default=EvaluationStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The raw score. NaN cannot round-trip through SQLite, so ``score_kind`` records what a
    # non-finite score was ("nan", "inf", "-inf"); ``finite`` is the flag statistics filter on.
    score: Mapped[float | None] = mapped_column(Float)
    score_kind: Mapped[str | None] = mapped_column(String(8))
    finite: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    cost_s: Mapped[float | None] = mapped_column(Float)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    device: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(256))
    # The queue class submission routed it to ("gpu", "cpu", "any"); every publish uses it.
    device_class: Mapped[str | None] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)  # when it (re)entered "queued"
    enqueued_at: Mapped[datetime | None] = mapped_column()  # last publish to the broker; NULL = never
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # A running evaluation asked to stop: its worker stores `cancelled` at its next heartbeat.
    cancel_requested_at: Mapped[datetime | None] = mapped_column()
    # The change sequence of incremental polling: every lifecycle transition sets a new, larger value
    # (docs/lifecycle.md "Change sequence"); changed_at is when (for the commit-lag grace).
    updated_seq: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    changed_at: Mapped[datetime | None] = mapped_column()

    architecture: Mapped[Architecture] = relationship()

    def set_score(self, value: float | None) -> None:
        if value is None:
            self.score, self.score_kind, self.finite = None, None, None
        elif math.isfinite(value):
            self.score, self.score_kind, self.finite = float(value), "finite", True
        else:
            kind = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
            self.score, self.score_kind, self.finite = None, kind, False


class ChangeCounter(Base):
    """SQLite's change sequence (one row; its write lock orders transitions). PostgreSQL uses the
    sequence ``evaluation_change_seq`` instead, which takes no row lock."""

    __tablename__ = "change_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class BatchVersion(Base):
    """A batch's change counter (app/batch_versions.py): bumped in the committing transaction of every
    change a ranking page shows, so a read compares one integer instead of aggregating the batch's
    evaluations. No row yet = version 0. No foreign key: a worker's bump must not fail because the
    batch was deleted meanwhile (orphan rows are harmless and removed with the batch)."""

    __tablename__ = "batch_versions"

    batch_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class BatchEvaluation(Base):
    """Which evaluations answer which method entry of which batch."""

    __tablename__ = "batch_evaluations"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    batch_method_id: Mapped[int] = mapped_column(
        ForeignKey("batch_methods.id", ondelete="CASCADE"), primary_key=True
    )
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"), primary_key=True, index=True)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)  # replayed verbatim
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkerSeen(Base):
    """Workers upsert this row periodically; /v1/health counts recent ones."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    device: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What the worker can run (app/services/fleet.py Capabilities), rewritten by every beacon.
    capabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class FastestTime(Base):
    """FEAR's fastest time-to-threshold of one cap scope (a batch id or a search scope), kept per
    device class (GPU model or "cpu") and basis ("seconds" or "steps"): a cap compares like with like."""

    __tablename__ = "fastest_times"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_class: Mapped[str] = mapped_column(String(128), primary_key=True)
    basis: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
