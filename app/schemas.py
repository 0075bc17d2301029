"""Request and response models of API v1. Limits live here so the OpenAPI schema states them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from app.api.models import MethodEntry, MethodTiming, ProgressEntry, UtcDateTime
from app.settings import get_settings
from app.spaces import SpaceName  # the one list of spaces (re-exported)

_settings = get_settings()
MAX_ITEMS = _settings.max_items_per_batch
MAX_METHODS = _settings.max_methods_per_batch
MAX_GENOTYPE = _settings.max_genotype_chars

DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)
NB201_EXAMPLE = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MethodRequest(Strict):
    name: str = Field(..., max_length=32, description="method name, see GET /v1/methods", examples=["fear"])

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        # The Python client accepts "params" for {"name": "params"}; the HTTP API keeps one shape, so
        # a caller translating client code to JSON is told the fix instead of "a valid dictionary".
        if isinstance(value, str):
            raise ValueError(
                f'a method is an object: write {{"name": "{value[:32]}"}} (plus "preset"/"config")'
            )
        return value

    preset: str | None = Field(
        None, max_length=32, description="named preset (GET /v1/methods lists them); default: the method's"
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="overrides of preset fields; validated against the method's schema"
    )
    alias: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:@+-]+$",
        description="name of this entry in rankings and reports; default: the method name, or name@preset "
        "and name#position when several entries share a name",
    )


class FunnelOption(Strict):
    measure: str = Field(
        ...,
        min_length=1,
        max_length=512,
        description="what ranks the candidates in the cheap stage: one of this batch's method aliases, a "
        "named composite, or composite:<alias>+<alias>...",
        examples=["params", "composite:synflow+naswot+jacob_cov"],
    )
    keep_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="keep the top ceil(fraction x candidates) by the measure"
    )
    keep: int | None = Field(None, ge=1, le=MAX_ITEMS, description="keep the top N by the measure")
    then: list[MethodRequest] = Field(
        ...,
        min_length=1,
        max_length=4,
        description="the expensive method entries, run only on the kept candidates once the cheap stage ends",
    )

    @model_validator(mode="after")
    def _one_keep(self) -> FunnelOption:
        if (self.keep_fraction is None) == (self.keep is None):
            raise ValueError("give exactly one of 'keep_fraction' (e.g. 0.25) or 'keep' (a count)")
        return self


class BatchOptions(Strict):
    ratio_to_fastest: float | None = Field(
        None,
        ge=1.0,
        le=1000.0,
        description="FEAR search-time cap: stage 1 may take at most ratio x the fastest time-to-threshold "
        "seen so far among this batch's FEAR evaluations on the same device class (GPU model or cpu); "
        "slower candidates end 'rejected'",
    )
    search_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="batches with the same search id (and ratio_to_fastest) share one fastest "
        "time-to-threshold for FEAR's cap; without it each batch has its own",
    )
    device_class: Literal["gpu", "cpu"] | None = Field(
        None,
        description="pin every evaluation of this batch to GPU or CPU workers; default: routed by method "
        "and preset (paper-scale training → gpu, the rest → any worker)",
    )
    ratio_basis: Literal["seconds", "steps"] = Field(
        "seconds",
        description="what ratio_to_fastest compares: wall-clock 'seconds' of stage 1, or optimizer 'steps' "
        "to the threshold (immune to packing and contention); compared within one device class",
    )
    ground_truth_set: str = Field(
        "client",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:@+-]+$",
        description="name under which the items' ground_truth values are stored",
    )
    composites: (
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")],
            Annotated[str, StringConstraints(min_length=11, max_length=512)],
        ]
        | None
    ) = Field(
        None,
        max_length=16,
        description="named composite rankings: name → 'composite:<alias>+<alias>...' over this batch's "
        "method aliases; usable as method=<name> in ranking, report, plots and export (computed on read)",
        examples=[{"zc3": "composite:synflow+naswot+jacob_cov"}],
    )
    funnel: FunnelOption | None = Field(
        None,
        description="run the batch's methods (the cheap stage) on every item, keep the top by 'measure', "
        "then run the 'then' methods on the kept items only (docs/reports.md, Funnel)",
    )
    max_failed: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="failure budget: once this many of the batch's evaluations ended failed or lost, its "
        "remaining queued evaluations (not shared with another live batch) are cancelled",
    )


class ItemRequest(Strict):
    @model_validator(mode="before")
    @classmethod
    def _bare_item(cls, value: Any) -> Any:
        # Shorthands of the Python client (an index, a genotype string) get the JSON spelling back.
        if isinstance(value, bool) or not isinstance(value, int | str):
            return value
        if isinstance(value, int):
            raise ValueError(
                f'an item is an object: write {{"nb201_index": {value}}} (space nb201) '
                f'or {{"index": {value}}}'
            )
        raise ValueError(
            'an item is an object: write {"genotype": "<the genotype>"} (plus "label", "ground_truth")'
        )

    genotype: str | dict[str, Any] | None = Field(
        None,
        description="genotype in the space's format (a string; darts/nb301 also a JSON object)",
        examples=[NB201_EXAMPLE],
    )
    # strict: true or "1462" is a client bug, not the architecture 1 or 1462
    nb201_index: int | None = Field(
        None, ge=0, le=15624, strict=True, description="NAS-Bench-201 index (space nb201)"
    )
    index: int | None = Field(
        None, ge=0, strict=True, description="the benchmark index in the batch's space (nb201, nats_sss)"
    )
    label: str | None = Field(None, max_length=256, description="client id/label echoed in rankings")
    ground_truth: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        allow_inf_nan=False,
        description="trusted final accuracy in percent (a finite number), e.g. from NAS-Bench-201",
    )

    @field_validator("genotype")
    @classmethod
    def _genotype_text(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str):
            if len(value) > MAX_GENOTYPE:
                raise ValueError(f"genotype is {len(value)} characters; the limit is {MAX_GENOTYPE}")
            if "\x00" in value:
                raise ValueError(f"genotype contains a NUL byte (\\x00) at position {value.index(chr(0))}")
        return value

    @model_validator(mode="after")
    def _exactly_one_identity(self) -> ItemRequest:
        given = [n for n in ("genotype", "nb201_index", "index") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'genotype', 'nb201_index' or 'index' "
                f"(got {', '.join(given) if given else 'none'})"
            )
        return self


class BatchCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "space": "nb201",
                    "dataset": "synthetic_cifar10",
                    "methods": [
                        {"name": "fear", "preset": "tiny"},
                        {"name": "synflow", "preset": "tiny"},
                        {"name": "params"},
                    ],
                    "seed": 0,
                    "options": {"ratio_to_fastest": 4.0},
                    "items": [
                        {"genotype": NB201_EXAMPLE, "label": "cand-17", "ground_truth": 93.12},
                        {"nb201_index": 1462},
                    ],
                },
                {
                    "space": "nats_sss",
                    "dataset": "synthetic_cifar10",
                    # Zero-cost only: the first example shows FEAR; these all finish in seconds on a CPU.
                    "methods": [{"name": "jacob_cov", "preset": "tiny"}, {"name": "params"}],
                    "items": [{"genotype": "64:32:48:16:64", "label": "s1"}, {"index": 32767}],
                },
                {
                    "space": "darts",
                    "dataset": "synthetic_cifar10",
                    "methods": [{"name": "synflow", "preset": "tiny"}, {"name": "flops"}],
                    "items": [{"genotype": DARTS_V2, "label": "DARTS_V2"}],
                },
                {
                    "space": "nb301",
                    "dataset": "synthetic_cifar10",
                    "methods": [{"name": "naswot", "preset": "tiny"}],
                    "items": [
                        {
                            "genotype": {
                                "normal": [
                                    ["sep_conv_3x3", 0],
                                    ["sep_conv_3x3", 1],
                                    ["sep_conv_3x3", 0],
                                    ["sep_conv_3x3", 1],
                                    ["sep_conv_3x3", 1],
                                    ["skip_connect", 0],
                                    ["skip_connect", 0],
                                    ["dil_conv_3x3", 2],
                                ],
                                "normal_concat": [2, 3, 4, 5],
                                "reduce": [
                                    ["max_pool_3x3", 0],
                                    ["max_pool_3x3", 1],
                                    ["skip_connect", 2],
                                    ["max_pool_3x3", 1],
                                    ["max_pool_3x3", 0],
                                    ["skip_connect", 2],
                                    ["skip_connect", 2],
                                    ["max_pool_3x3", 1],
                                ],
                                "reduce_concat": [2, 3, 4, 5],
                            }
                        }
                    ],
                },
            ]
        },
    )

    space: SpaceName = Field(..., description="search space of every item")
    dataset: str = Field(..., max_length=64, description="dataset name, see GET /v1/datasets")
    methods: list[MethodRequest] = Field(..., min_length=1, max_length=MAX_METHODS)
    seed: int = Field(
        0, ge=0, le=2**31 - 1, strict=True, description="seed for weights, data order and augmentation"
    )
    options: BatchOptions = Field(default_factory=BatchOptions)  # type: ignore[arg-type]
    owner: str | None = Field(None, max_length=128)
    items: list[ItemRequest] = Field(..., min_length=1, max_length=MAX_ITEMS)


class EvaluationCounts(BaseModel):
    new: int
    reused: int
    retried: int = 0


class BatchCreated(BaseModel):
    batch_id: str
    evaluations: EvaluationCounts
    items: int
    architectures: int
    methods: list[dict[str, Any]]
    status_url: str
    ranking_url: str
    published: bool = Field(
        True, description="false: the broker was down; the evaluations are stored and published later"
    )
    warnings: list[str] = Field(default_factory=list, description="what the client should know")
    replayed: bool = Field(False, description="true: the stored response of an earlier request with this key")


class StatusCounts(BaseModel):
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    unmet: int = 0
    rejected: int = 0
    lost: int = 0
    cancelled: int = 0


class BatchStatus(BaseModel):
    batch_id: str
    status: Literal["queued", "running", "done"]
    space: str
    dataset: str
    seed: int
    options: dict[str, Any]
    created_at: UtcDateTime
    counts: StatusCounts
    methods: list[MethodEntry]
    per_method: dict[str, StatusCounts]
    progress: list[ProgressEntry]
    timings: dict[str, MethodTiming]
    eta_s: float | None = Field(description="seconds until every evaluation is finished (estimate)")
    eta_basis: Literal["prior", "measured", "mixed"] | None = Field(
        None,
        description="what the ETA rests on: the cost prior, measured costs, or both; null when done",
    )
    cancelled_at: UtcDateTime | None = Field(None, description="when the batch was cancelled (or stopped)")
    cancel_reason: str | None = Field(
        None, description="'cancelled by its owner' or 'failure budget exhausted'; null if not cancelled"
    )


class RankingItem(BaseModel):
    rank: float | None = Field(
        description="1 = best; ties share the average rank; null = not ranked (see reason)"
    )
    position: int
    label: str | None
    genotype: str
    index: int | None
    score: float | None = Field(description="the score; null when non-finite (see score_repr) or pending")
    score_repr: str | None = Field(None, description="'nan', 'inf' or '-inf' for a non-finite score")
    finite: bool | None
    status: str
    reason: str | None = None
    cost_s: float | None
    evaluation_id: int | None = Field(description="null for a composite (computed on read, not stored)")
    architecture_key: str
    degenerate: bool
    ground_truth: float | None = None
    info: dict[str, Any] = Field(default_factory=dict)


class Ranking(BaseModel):
    batch_id: str
    method: str
    higher_is_better: bool
    partial: bool = Field(False, description="true while evaluations of this method are queued/running")
    n_pending: int = Field(0, description="evaluations of this method still queued or running")
    items: list[RankingItem]
    total: int
    limit: int
    offset: int
    composite: dict[str, Any] | None = Field(
        None, description="for a composite: its measures and rules (missing, inf); null for a method"
    )
