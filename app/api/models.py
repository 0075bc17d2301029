"""Response models of the read path (status, rankings, reports, exports, catalogue, health) and the
documented error responses. Request models and the submission response live in app.schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.errors import PROBLEM_MEDIA_TYPE, Problem


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the service stores UTC, so naive means UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]
"""A timestamp that leaves the API as RFC 3339 UTC with an offset, whatever the database returned."""


def iso_utc(value: datetime | None) -> str | None:
    return None if value is None else _as_utc(value).isoformat()


_ERROR_TEXT = {
    400: "malformed request (e.g. a body that is not UTF-8 JSON)",
    401: "no API key, or an unknown, expired or revoked one (docs/security.md)",
    403: "the key lacks the scope this request needs, or names another owner",
    404: "no such batch, architecture or route",
    409: "conflict with stored state (e.g. an Idempotency-Key reused with a different body)",
    413: "request body too large (also when sent chunked)",
    415: "the body's content-type is not application/json",
    422: "invalid input; errors[].loc names the field, errors[].msg says what to change",
    429: "this key's (or client's) rate limit is used up; retry after the Retry-After header's seconds",
    503: "the database or broker is unavailable; retry after the Retry-After header's seconds",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the given error statuses, all with the problem-details body."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "description": _ERROR_TEXT[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }


READ_ERRORS = (400, 404, 422, 503)


class Open(BaseModel):
    """A response part whose extra fields pass through (free-form worker output, catalogue facts)."""

    model_config = ConfigDict(extra="allow")


class MethodEntry(BaseModel):
    alias: str
    name: str
    preset: str | None
    config_hash: str


class ProgressEntry(Open):
    evaluation_id: int
    method: str
    genotype: str
    index: int | None
    attempt: int
    worker: str | None
    device: str | None
    started_at: UtcDateTime | None
    heartbeat_at: UtcDateTime | None


class MethodTiming(BaseModel):
    mean_cost_s: float | None
    total_cost_s: float | None
    n: int


# --- catalogue ---------------------------------------------------------------------------------


class SpaceInfo(BaseModel):
    name: str
    description: str
    ops: list[str]
    example: str
    has_index: bool
    index_count: int | None
    network_options: dict[str, str]


class SpaceList(BaseModel):
    items: list[SpaceInfo]


class MethodInfo(BaseModel):
    name: str
    family: str
    summary: str
    higher_is_better: bool
    spaces: list[str]
    default_preset: str | None
    presets: dict[str, dict[str, Any]]
    config_schema: dict[str, Any]


class MethodList(BaseModel):
    space: str
    dataset: str
    items: list[MethodInfo]


class DatasetAvailability(BaseModel):
    present: bool
    path: str
    missing: list[str]


class DatasetInfo(Open):
    name: str
    availability: DatasetAvailability


class DatasetList(BaseModel):
    datasets_dir: str = Field(description="where dataset files are read (may be a read-only mount)")
    cache_dir: str = Field(description="where generated and decoded datasets are cached (writable)")
    items: list[DatasetInfo]


# --- health -------------------------------------------------------------------------------------


class DatabaseHealth(BaseModel):
    ok: bool
    dialect: str | None = None
    error: str | None = None


class BrokerHealth(BaseModel):
    ok: bool
    detail: str
    queue_depth: int | None
    queue_depths: dict[str, int] | None = Field(
        None, description="messages waiting per routed queue (<queue>.gpu, <queue>.cpu, <queue>.any)"
    )


class WorkerSeenOut(BaseModel):
    name: str
    device: str | None
    queue: str | None
    last_seen: UtcDateTime
    capabilities: dict[str, Any] | None = Field(
        None, description="what the worker advertises: device class, GPU, torch/CUDA, slots, queues, datasets"
    )


class DeviceClassHealth(BaseModel):
    """The live workers of one device class and the queues they consume."""

    workers: int
    slots: int
    gpus: list[str] = Field(default_factory=list, description="GPU models of these workers")
    queues: dict[str, int | None] = Field(
        default_factory=dict, description="queue → messages waiting, for each queue these workers consume"
    )


class WorkersHealth(BaseModel):
    recent: int
    items: list[WorkerSeenOut]
    window_s: float
    by_device_class: dict[str, DeviceClassHealth] = Field(
        default_factory=dict, description="the fleet per device class (gpu, cpu, unknown)"
    )


class PendingCounts(BaseModel):
    queued: int | None
    running: int | None


class Health(BaseModel):
    status: str = Field(description="'ok', or 'degraded' when a dependency is down (status 503)")
    down: list[str] = Field(default_factory=list, description="dependencies that are down: database, broker")
    database: DatabaseHealth
    broker: BrokerHealth
    workers: WorkersHealth
    evaluations: PendingCounts


# --- ground truth, architectures, exports ---------------------------------------------------------


class GroundTruthPut(BaseModel):
    batch_id: str
    set_name: str
    created: int
    updated: int
    unchanged: int


class GroundTruthSets(BaseModel):
    sets: list[str]
    methods: list[str]


class ArchitectureEvaluation(Open):
    evaluation_id: int
    method: str
    status: str
    score: float | None
    score_repr: str | None
    finite: bool | None
    reason: str | None
    cost_s: float | None
    dataset: str
    config: dict[str, Any]
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class ArchitectureView(BaseModel):
    space: str
    key: str
    genotype: str
    index: int | None
    iso_key: str | None
    degenerate: bool
    evaluations: list[ArchitectureEvaluation]


class ExportRow(Open):
    """One (item, method) pair; every stored field of the evaluation (more keys than declared here)."""

    item_position: int | None
    label: str | None
    ground_truth: float | None
    evaluation_id: int | None  # null on a composite's rows (computed on read)
    method: str
    method_name: str | None
    genotype: str | None
    architecture_key: str | None
    index: int | None
    status: str
    score: float | None
    score_kind: str | None
    finite: bool | None
    reason: str | None
    error: str | None
    cost_s: float | None
    created_at: UtcDateTime | None
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class ExportJson(BaseModel):
    batch_id: str
    space: str
    dataset: str
    seed: int
    options: dict[str, Any]
    methods: list[dict[str, Any]]
    rows: list[ExportRow]


# --- reports ------------------------------------------------------------------------------------


class TopPercentRow(BaseModel):
    p: float
    k: int
    spe: float | None
    common: float | None = Field(description="null while the method has no finite score yet")
    duration_mean_s: float | None
    duration_std_s: float | None
    n_spe: int
    n_duration: int
    note: str | None


class MethodReport(Open):
    method: str
    higher_is_better: bool
    spearman: float | None
    kendall: float | None
    n_used: int = Field(description="architectures with a usable score and a ground truth: the n behind ρ")
    n_nonfinite: int = Field(description="done, but the score is NaN or ±inf (left out of ρ)")
    n_unmet: int = Field(description="FEAR never reached its threshold (no score; left out of ρ)")
    n_rejected: int = Field(description="stopped by the ratio-to-fastest cap (left out of ρ)")
    n_failed: int = Field(description="failed evaluations (left out of ρ)")
    n_pending: int
    spearman_ci: dict[str, Any]
    top_percent: list[TopPercentRow]


class CostEntry(BaseModel):
    n: int
    n_missing: int
    mean_s: float | None
    total_s: float | None
    ratio_to_reference: float | None


class GroundTruthSummary(BaseModel):
    name: str | None
    n: int
    n_ignored: int


class Report(BaseModel):
    batch_ids: list[str]
    generated_at: UtcDateTime
    partial: bool = Field(description="true while any evaluation of the report is still queued/running")
    n_pending: int = Field(description="evaluations still queued or running")
    ground_truth: GroundTruthSummary
    percents: list[float]
    reference: str
    methods: dict[str, MethodReport]
    matrix: dict[str, dict[str, float | None]]
    costs: dict[str, CostEntry]
    funnel: dict[str, Any] | None = Field(
        None, description="funnel batches: kept items, cost spent and saved, top-% vs a reference batch"
    )


MARKDOWN_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/markdown": {"schema": {"type": "string"}}}, "description": "the report"}
}
PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}
}
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "one row per evaluation"}
}
