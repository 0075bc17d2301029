"""Ground truth, correlation reports, plots and exports."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.conditional import conditional, conditional_model
from app.api.deps import BatchId, SessionDep
from app.api.models import (
    CSV,
    MARKDOWN_OR_JSON,
    PNG,
    READ_ERRORS,
    ExportJson,
    GroundTruthPut,
    GroundTruthSets,
    Report,
    problem_responses,
)
from app.auth import PrincipalDep
from app.errors import InputError
from app.services import batch_view, composite_view, report_view
from app.services.reports import report_markdown
from app.services.submission import method_summary

router = APIRouter(tags=["reports"])

SET_NAME_PATTERN = r"^[A-Za-z0-9_.@+-][A-Za-z0-9_.:@+-]{0,127}$"
GroundTruthQuery = Annotated[
    str | None,
    Query(
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:@+#-]+$",
        description="ground-truth set name (default: the client's), or 'full' / 'method:<alias>' for the "
        "batch's own full-training results",
    ),
]
PercentsQuery = Annotated[
    str | None,
    Query(
        max_length=256,
        pattern=r"^\s*[0-9.]+\s*(,\s*[0-9.]+\s*)*$",
        description="comma-separated p values in (0, 100], default 10,20,30,40,50,100",
    ),
]
MethodsQuery = Annotated[
    # a space: an unescaped "+" of a composite spec, decoded
    list[Annotated[str, Field(max_length=512, pattern=r"^[A-Za-z0-9_.:@+# -]+$")]] | None,
    Query(
        description="restrict to these method aliases; also named composites or composite:<alias>+<alias>..."
    ),
]
CompositeMissingQuery = Annotated[
    Literal["worst", "exclude"] | None,
    Query(description="composites: a missing/NaN measure gets its worst rank (default) or excludes the item"),
]
CompositeInfQuery = Annotated[
    Literal["order", "unusable"] | None,
    Query(description="composites: ±inf ranks by its order (default) or counts as missing"),
]
CompositeExportQuery = Annotated[
    list[Annotated[str, Field(max_length=512, pattern=r"^[A-Za-z0-9_.:@+# -]+$")]] | None,
    Query(description="add these composites (composite:<alias>+<alias>...) to the batch's named ones"),
]
FormatQuery = Annotated[Literal["json", "markdown"], Query(description="json, or markdown for people")]
Accuracy = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


_IDENTITIES = ("genotype", "index", "nb201_index", "label")


class GroundTruthItem(BaseModel):
    # the schema states the "exactly one identity" rule too, so schema-valid bodies are accepted
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": [name], "not": {"anyOf": [{"required": [o]} for o in _IDENTITIES if o != name]}}
                for name in _IDENTITIES
            ]
        },
    )
    genotype: str | dict[str, Any] | None = Field(None, json_schema_extra={"not": {"type": "null"}})
    index: int | None = Field(None, ge=0, strict=True, json_schema_extra={"not": {"type": "null"}})
    nb201_index: int | None = Field(
        None, ge=0, le=15624, strict=True, json_schema_extra={"not": {"type": "null"}}
    )
    label: str | None = Field(None, max_length=256, json_schema_extra={"not": {"type": "null"}})
    value: Accuracy = Field(..., description="accuracy in percent, a finite number in [0, 100]")

    @model_validator(mode="after")
    def _one_identity(self) -> GroundTruthItem:
        given = [n for n in ("genotype", "index", "nb201_index", "label") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'genotype', 'index', 'nb201_index' or 'label' "
                f"(got {', '.join(given) if given else 'none'})"
            )
        return self


class GroundTruthBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[GroundTruthItem] = Field(..., min_length=1, max_length=20_000)


class CrossBatchReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_ids: list[Annotated[str, Field(max_length=64)]] = Field(..., min_length=1, max_length=100)
    ground_truth: str | None = Field(None, max_length=128)
    methods: list[Annotated[str, Field(max_length=64)]] | None = None
    percents: list[Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]] | None = None
    reference_batch: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="with one funnel batch: a batch that ran the expensive method on every candidate",
    )


SetName = Annotated[
    str,
    Path(
        pattern=SET_NAME_PATTERN,
        description="1-128 characters of A-Z a-z 0-9 _ . : @ + -; not 'full' nor 'method:...'",
    ),
]


@router.put(
    "/batches/{batch_id}/ground_truth/{set_name}",
    response_model=GroundTruthPut,
    summary="Add or replace ground-truth accuracies under a named set (idempotent)",
    responses=problem_responses(400, 404, 413, 415, 422, 503),
)
def put_ground_truth(
    batch_id: BatchId, set_name: SetName, body: GroundTruthBody, session: SessionDep, principal: PrincipalDep
) -> Any:
    if set_name == "full" or set_name.startswith("method:"):
        raise InputError(["path", "set_name"], "set name must not be 'full' or 'method:...' (reserved)")
    batch = batch_view.get_batch(session, batch_id, principal)
    counts = report_view.put_ground_truth(session, batch, set_name, [i.model_dump() for i in body.items])
    return {"batch_id": batch_id, "set_name": set_name, **counts}


@router.get(
    "/batches/{batch_id}/ground_truth",
    response_model=GroundTruthSets,
    summary="Ground-truth sets available for a batch",
    responses=problem_responses(*READ_ERRORS),
)
def list_ground_truth(batch_id: BatchId, session: SessionDep, principal: PrincipalDep) -> Any:
    batch = batch_view.get_batch(session, batch_id, principal)
    return {
        "sets": report_view.ground_truth_sets(session, batch),
        "methods": [f"method:{m.alias}" for m in batch.methods if m.name == "full"],
    }


def _respond(result: dict[str, Any], fmt: str, if_none_match: str | None = None) -> Response:
    if fmt == "markdown":
        return conditional(report_markdown(result).encode(), "text/markdown; charset=utf-8", if_none_match)
    return conditional_model(Report, result, if_none_match, volatile=_VOLATILE)


_VOLATILE = frozenset({"generated_at"})


@router.get(
    "/batches/{batch_id}/report",
    response_model=Report,
    summary="Spearman/Kendall, top-% table, method matrix, costs (ETag: If-None-Match → 304)",
    responses={
        **MARKDOWN_OR_JSON,
        304: {"description": "not modified since the ETag given"},
        **problem_responses(*READ_ERRORS),
    },
)
def get_report(
    batch_id: BatchId,
    session: SessionDep,
    principal: PrincipalDep,
    ground_truth: GroundTruthQuery = None,
    method: MethodsQuery = None,
    percents: PercentsQuery = None,
    bootstrap: Annotated[int, Query(ge=0, le=10_000, description="bootstrap resamples for the CI")] = 1000,
    format: FormatQuery = "json",
    composite_missing: CompositeMissingQuery = None,
    composite_inf: CompositeInfQuery = None,
    reference_batch: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="funnel batches: a batch that ran the expensive method on every candidate; the "
            "report's funnel section then has the top-% table of the funnel against it",
        ),
    ] = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Any:
    batch = batch_view.get_batch(session, batch_id, principal)
    rules = composite_view.rules_from_query(composite_missing, composite_inf)
    reference = batch_view.get_batch(session, reference_batch, principal) if reference_batch else None
    result = report_view.report(
        session,
        [batch],
        ground_truth,
        method,
        report_view.parse_percents(percents),
        bootstrap,
        rules,
        reference,
    )
    return _respond(result, format, if_none_match)


@router.post(
    "/reports",
    response_model=Report,
    summary="One report over several batches that share ground truth",
    responses={**MARKDOWN_OR_JSON, **problem_responses(400, 404, 413, 415, 422, 503)},
)
def create_report(
    body: CrossBatchReport, session: SessionDep, principal: PrincipalDep, format: FormatQuery = "json"
) -> Any:
    batches = [batch_view.get_batch(session, b, principal) for b in body.batch_ids]
    try:
        percents = report_view.parse_percents(
            ",".join(str(p) for p in body.percents) if body.percents else None
        )
        reference = (
            batch_view.get_batch(session, body.reference_batch, principal) if body.reference_batch else None
        )
        result = report_view.report(
            session, batches, body.ground_truth, body.methods, percents, 1000, reference_batch=reference
        )
    except InputError as exc:
        raise exc.in_body() from None  # the checks are getReport's; these fields came in the body
    return _respond(result, format)


@router.get(
    "/batches/{batch_id}/plots/score_vs_ground_truth.png",
    response_class=Response,
    responses={**PNG, **problem_responses(*READ_ERRORS)},
    summary="Score vs ground truth, one scatter per method (ρ in the title)",
)
def get_plot_scores(
    batch_id: BatchId,
    session: SessionDep,
    principal: PrincipalDep,
    method: MethodsQuery = None,
    ground_truth: GroundTruthQuery = None,
    width: Annotated[int, Query(ge=200, le=4000)] = 1200,
    height: Annotated[int | None, Query(ge=200, le=4000)] = None,
    composite_missing: CompositeMissingQuery = None,
    composite_inf: CompositeInfQuery = None,
) -> Response:
    from app.services.reports.plots import points_from_rows, score_vs_ground_truth_png

    batch = batch_view.get_batch(session, batch_id, principal)
    rules = composite_view.rules_from_query(composite_missing, composite_inf)
    scatter = report_view.scatter_rows(session, batch, ground_truth, method, rules)
    png = score_vs_ground_truth_png(
        points_from_rows(scatter.rows_by_method, scatter.truth),
        width_px=width,
        height_px=height,
        ground_truth_label=f"ground truth ({scatter.name})",
        pending_by_method=scatter.pending_by_method,
    )
    return Response(png, media_type="image/png")


@router.get(
    "/batches/{batch_id}/plots/cost_vs_spearman.png",
    response_class=Response,
    responses={**PNG, **problem_responses(*READ_ERRORS)},
    summary="Mean cost per architecture vs Spearman ρ, one point per method/setting",
)
def get_plot_cost(
    batch_id: BatchId,
    session: SessionDep,
    principal: PrincipalDep,
    ground_truth: GroundTruthQuery = None,
    width: Annotated[int, Query(ge=200, le=4000)] = 900,
    height: Annotated[int, Query(ge=200, le=4000)] = 600,
    method: MethodsQuery = None,
) -> Response:
    from app.services.reports.plots import cost_vs_spearman_png, entries_from_report

    batch = batch_view.get_batch(session, batch_id, principal)
    result = report_view.report(session, [batch], ground_truth, method, report_view.parse_percents(None), 200)
    png = cost_vs_spearman_png(entries_from_report(result), width_px=width, height_px=height)
    return Response(png, media_type="image/png")


@router.get(
    "/batches/{batch_id}/export.csv",
    response_class=Response,
    responses={**CSV, **problem_responses(*READ_ERRORS)},
    summary="Every evaluation as CSV (cells that a spreadsheet would run as a formula are quoted with ')",
)
def export_csv(
    batch_id: BatchId, session: SessionDep, principal: PrincipalDep, composite: CompositeExportQuery = None
) -> Response:
    batch = batch_view.get_batch(session, batch_id, principal)
    rows = report_view.export_rows(session, batch)
    body = report_view.to_csv(rows + report_view.composite_export_rows(session, batch, composite or ()))
    return Response(
        body,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"'},
    )


@router.get(
    "/batches/{batch_id}/export.json",
    response_model=ExportJson,
    summary="Every evaluation as JSON",
    responses=problem_responses(*READ_ERRORS),
)
def export_json(
    batch_id: BatchId, session: SessionDep, principal: PrincipalDep, composite: CompositeExportQuery = None
) -> Any:
    batch = batch_view.get_batch(session, batch_id, principal)
    composites = report_view.composite_export_rows(session, batch, composite or ())
    return {
        "batch_id": batch_id,
        "space": batch.space,
        "dataset": batch.dataset,
        "seed": batch.seed,
        "options": batch.options,
        "methods": [method_summary(m) for m in batch.methods],
        "rows": report_view.export_rows(session, batch) + composites,
    }
