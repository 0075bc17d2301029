"""Every tunable of the service in one typed object (env prefix ``FASTARCHRANK_``).

With no configuration the service runs embedded: a SQLite file and a filesystem broker under
``data_dir``, so ``fastarchrank serve`` works on a fresh machine. Point ``database_url`` at Postgres
and ``broker_url`` at Redis for the full stack; the code path is the same.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FASTARCHRANK_", extra="ignore")

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Field(
        Path.home() / ".fastarchrank",
        description="root for the embedded database, embedded broker, caches and default dataset files",
    )
    datasets_dir: Path | None = Field(
        None,
        description="folder holding dataset files (cifar-10-batches-py/ ...); default <data_dir>/datasets",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/fastarchrank.db"
    )
    broker_url: str | None = Field(
        None, description="Celery broker URL (redis://...); default: a filesystem broker under data_dir"
    )

    # --- API limits (also stated in the OpenAPI schema) -----------------------------------------
    max_items_per_batch: int = Field(20_000, ge=1, description="items in one POST /v1/batches")
    max_methods_per_batch: int = Field(32, ge=1, description="method entries in one batch")
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="request body size, bytes")
    max_genotype_chars: int = Field(4096, ge=64, description="length of one genotype string, characters")
    max_page_size: int = Field(
        1000,
        ge=1,
        le=1000,
        description="largest `limit` of paginated listings (rankings, evaluation feeds, batch lists); "
        "may lower the API's hard limit of 1000, not raise it. The dashboard reads pages of this size",
    )
    ranking_cache_rows: int = Field(
        20_000,
        ge=0,
        description="rows of finished rankings each API process keeps in memory (~2 KB each); 0 = no cache",
    )
    ranking_version_ttl_s: float = Field(
        0.25,
        ge=0,
        description="how long an API process reuses a batch's version before reading it again, seconds: "
        "a ranking poll may trail a worker's change by this much (the process's own writes are seen at "
        "once); 0 = read it on every request",
    )

    cursor_secret: SecretStr | None = Field(
        None,
        description="HMAC key signing listing cursors; default: a random key kept in "
        "<data_dir>/cursor_secret (set it explicitly when API processes do not share data_dir)",
    )

    # --- task execution ------------------------------------------------------------------------
    task_soft_time_limit_s: int = Field(6 * 3600, ge=10, description="soft limit of one task, seconds")
    task_hard_time_limit_s: int = Field(6 * 3600 + 300, ge=20, description="hard limit of one task, seconds")
    broker_visibility_timeout_s: int = Field(
        7 * 3600, ge=30, description="Redis visibility timeout, seconds; must be >= the hard limit"
    )
    max_attempts: int = Field(3, ge=1, le=20, description="deliveries of one evaluation before it is 'lost'")
    heartbeat_interval_s: float = Field(5.0, gt=0, description="minimum seconds between progress writes")
    stale_after_s: float = Field(
        120.0, gt=0, description="a running evaluation without heartbeat this long is re-queued by the reaper"
    )
    requeue_after_s: float = Field(
        60.0, gt=0, description="a queued evaluation older than this is re-enqueued by the sweeper"
    )
    sweep_interval_s: float = Field(30.0, gt=0, description="period of the sweeper/reaper loop, seconds")
    worker_seen_window_s: float = Field(120.0, gt=0, description="a worker counts as alive this long")
    publish_lease_s: float = Field(
        600.0,
        gt=0,
        description="a published evaluation not claimed within this many seconds is published again "
        "(its message may have been lost to a broker or database outage), seconds",
    )
    publish_lease_max_s: float = Field(
        3600.0,
        gt=0,
        description="the publish lease grows with the time an evaluation has waited in the queue, up to "
        "this many seconds (a long backlog is not re-published every publish_lease_s), seconds",
    )
    worker_beacon_interval_s: float = Field(
        5.0, gt=0, description="period of a worker's presence beacon (its `workers` row), seconds"
    )
    worker_dead_after_s: float = Field(
        20.0,
        gt=0,
        description="a worker whose beacon is older than this is dead: the reaper re-queues its running "
        "evaluations at once (heartbeats keep long epochs alive independently), seconds",
    )
    db_retry_attempts: int = Field(
        5, ge=1, le=50, description="tries of a worker's claim or result write while the database is away"
    )
    db_retry_backoff_s: float = Field(
        0.5, gt=0, description="first pause between those tries, doubled after each, seconds"
    )
    submit_retry_attempts: int = Field(
        5,
        ge=1,
        le=50,
        description="tries of a submission transaction that hit a deadlock or serialization failure",
    )

    # --- worker --------------------------------------------------------------------------------
    device: str = Field("auto", description="'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:N'")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads; None = torch default")
    queue: str = Field("evaluations", description="Celery queue evaluations go to")
    zero_cost_archs_per_task: int = Field(
        16, ge=1, le=1000, description="architectures whose zero-cost measures share one task"
    )
    broker_polling_interval_s: float = Field(
        0.1, gt=0, le=10, description="how often the embedded filesystem broker is polled, seconds"
    )

    # --- fleet: routing by device class, slots (docs/deploy.md) -----------------------------------
    gpu_presets: list[str] = Field(
        ["paper", "paper-search", "paper-nb201-augment"],
        description="training presets routed to the `<queue>.gpu` queue; other presets go to `<queue>.any`",
    )
    gpu_min_prior_cost_s: float = Field(
        3600.0,
        gt=0,
        description="a training entry whose prior cost per evaluation is at least this is routed to GPU "
        "workers whatever its preset, seconds",
    )
    worker_device_classes: list[Literal["gpu", "cpu", "any"]] | None = Field(
        None,
        description="queues a worker consumes, by device class; default: gpu + any on a CUDA worker, "
        "cpu + any on a CPU worker (a CPU worker takes GPU work only when this names gpu)",
    )
    slot_memory_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of its GPU's memory one worker slot may allocate (torch per-process memory "
        "fraction); default 1/slots when a GPU runs several slots, no cap with one; ignored on CPU",
    )
    stack_size: int = Field(
        1,
        ge=1,
        le=64,
        description="training evaluations (fear, shortreg, full; NB201) a worker process trains as one "
        "stacked network: it claims up to this many queued ones that differ only in the architecture; "
        "1 = each alone",
    )
    stack_mode: Literal["auto", "exact", "grouped"] = Field(
        "auto",
        description="stacked convolutions: 'exact' per-network kernels (bitwise each network alone on "
        "CPU), 'grouped' one grouped kernel per layer (the GPU's fast path, ~1e-5 from alone); 'auto' "
        "grouped on CUDA, exact elsewhere",
    )
    warmup: Literal["auto", "always", "off"] = Field(
        "auto",
        description="untimed warm-up step per (space, batch size) before FEAR's timed stage 1: 'auto' on "
        "CUDA only, 'always' also on CPU (tests), 'off' never",
    )

    # --- serve ---------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="bind address of `fastarchrank serve`")
    port: int = Field(8000, ge=1, le=65535, description="port of `fastarchrank serve`")

    # --- access control and rate limits (docs/security.md) --------------------------------------
    auth: Literal["auto", "required", "off"] = Field(
        "auto",
        description="'auto': API keys required unless `host` is a loopback address and the request "
        "arrived on a loopback socket; 'required': always; 'off': never (everyone is the local owner)",
    )
    auth_secret: SecretStr | None = Field(
        None,
        description="server pepper of the API-key HMACs (>= 32 characters); default: generated once into "
        "<data_dir>/auth_secret (mode 0600). Every API process and `keys` CLI must share it",
    )
    auth_last_used_resolution_s: float = Field(
        60.0, ge=0, description="a key's last_used_at is written at most once per this many seconds"
    )
    rate_limit_per_minute: int = Field(
        120, ge=0, description="submit-scope requests per minute per key (per client IP if no key); 0 = off"
    )
    read_rate_limit_per_minute: int = Field(
        1200, ge=0, description="read-scope requests per minute per key (per client IP if anonymous); 0 = off"
    )
    rate_limit_storage_url: str | None = Field(
        None,
        description="`limits` storage URI; default: the broker when it is Redis (shared by all API "
        "processes), else memory:// (per process)",
    )
    idempotency_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="how long an Idempotency-Key replays its batch, seconds; after that the key is free "
        "and the same request creates a new batch",
    )
    poll_grace_s: float = Field(
        5.0,
        ge=0,
        description="the `next` cursor of GET /v1/batches/{id}/evaluations passes a change only once it is "
        "this many seconds old (a transition that commits late is still seen), seconds",
    )
    rate_limit_namespace: str | None = Field(
        None,
        description="prefix of the rate-limit counters; default: derived from the database URL, so "
        "deployments sharing one Redis never share counters",
    )

    # --- fair queues (docs/lifecycle.md "Fair queues") ----------------------------------------------
    fair_priorities: bool = Field(
        True,
        description="publish every task with a broker priority from the size of the smallest batch it "
        "serves, so a small batch overtakes a large one queued before it (Redis only; the filesystem "
        "broker ignores priorities)",
    )
    fair_priority_base: int = Field(
        4,
        ge=2,
        le=1000,
        description="batch-size ratio of one priority step: below base² evaluations a batch gets the "
        "best step 0, and each base-fold growth one step worse (at 4: 1-15 → 0, 16-63 → 1, ... 20,000 "
        "→ 6, 1,048,576+ → 9), evaluations",
    )

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.task_soft_time_limit_s >= self.task_hard_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_hard_time_limit_s")
        if self.broker_visibility_timeout_s < self.task_hard_time_limit_s:
            # Redis would redeliver a task still legitimately running: duplicate work.
            raise ValueError("broker_visibility_timeout_s must be >= task_hard_time_limit_s")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'fastarchrank.db'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def embedded_broker(self) -> bool:
        return self.effective_broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def effective_datasets_dir(self) -> Path:
        return self.datasets_dir or self.data_dir / "datasets"

    @property
    def cache_dir(self) -> Path:
        """Generated (synthetic) and decoded (image-folder) datasets: always under the writable data
        directory, never under ``datasets_dir``, which may be a read-only shared mount."""
        return self.data_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
