"""Ground truth, correlation reports, plots and exports."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import SessionDep
from app.errors import InputError
from app.services import batch_view, report_view
from app.services.reports import report_markdown
from app.services.submission import method_summary

router = APIRouter(tags=["reports"])

GroundTruthQuery = Annotated[
    str | None,
    Query(
        max_length=128,
        description="ground-truth set name (default: the client's), or 'full' / 'method:<alias>' for the "
        "batch's own full-training results",
    ),
]
PercentsQuery = Annotated[
    str | None, Query(description="comma-separated p values, default 10,20,30,40,50,100")
]


class GroundTruthItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    genotype: str | dict[str, Any] | None = None
    index: int | None = Field(None, ge=0)
    nb201_index: int | None = Field(None, ge=0, le=15624)
    label: str | None = Field(None, max_length=256)
    value: float = Field(..., ge=0.0, le=100.0, description="accuracy in percent")


class GroundTruthBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[GroundTruthItem] = Field(..., min_length=1, max_length=20_000)


class CrossBatchReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_ids: list[str] = Field(..., min_length=1, max_length=100)
    ground_truth: str | None = Field(None, max_length=128)
    methods: list[str] | None = None
    percents: list[float] | None = None


@router.put(
    "/batches/{batch_id}/ground_truth/{set_name}",
    summary="Add or replace ground-truth accuracies under a named set (idempotent)",
)
def put_ground_truth(batch_id: str, set_name: str, body: GroundTruthBody, session: SessionDep) -> Any:
    if not set_name or len(set_name) > 128 or set_name in ("full",) or set_name.startswith("method:"):
        raise InputError(
            ["path", "set_name"], "set name must be 1-128 characters and not 'full' or 'method:...'"
        )
    batch = batch_view.get_batch(session, batch_id)
    counts = report_view.put_ground_truth(session, batch, set_name, [i.model_dump() for i in body.items])
    return {"batch_id": batch_id, "set_name": set_name, **counts}


@router.get("/batches/{batch_id}/ground_truth", summary="Ground-truth sets available for a batch")
def list_ground_truth(batch_id: str, session: SessionDep) -> Any:
    batch = batch_view.get_batch(session, batch_id)
    return {
        "sets": report_view.ground_truth_sets(session, batch),
        "methods": [f"method:{m.alias}" for m in batch.methods if m.name == "full"],
    }


def _respond(result: dict[str, Any], fmt: str) -> Any:
    if fmt == "markdown":
        return PlainTextResponse(report_markdown(result), media_type="text/markdown")
    return result


@router.get("/batches/{batch_id}/report", summary="Spearman/Kendall, top-% table, method matrix, costs")
def get_report(
    batch_id: str,
    session: SessionDep,
    ground_truth: GroundTruthQuery = None,
    method: Annotated[list[str] | None, Query(description="restrict to these method aliases")] = None,
    percents: PercentsQuery = None,
    bootstrap: Annotated[int, Query(ge=0, le=10_000, description="bootstrap resamples for the CI")] = 1000,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> Any:
    batch = batch_view.get_batch(session, batch_id)
    result = report_view.report(
        session, [batch], ground_truth, method, report_view.parse_percents(percents), bootstrap
    )
    return _respond(result, format)


@router.post("/reports", summary="One report over several batches that share ground truth")
def cross_batch_report(
    body: CrossBatchReport,
    session: SessionDep,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> Any:
    batches = [batch_view.get_batch(session, b) for b in body.batch_ids]
    percents = report_view.parse_percents(",".join(str(p) for p in body.percents) if body.percents else None)
    result = report_view.report(session, batches, body.ground_truth, body.methods, percents, 1000)
    return _respond(result, format)


@router.get(
    "/batches/{batch_id}/plots/score_vs_ground_truth.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    summary="Score vs ground truth, one scatter per method (ρ in the title)",
)
def plot_scores(
    batch_id: str,
    session: SessionDep,
    method: Annotated[list[str] | None, Query()] = None,
    ground_truth: GroundTruthQuery = None,
    width: Annotated[int, Query(ge=200, le=4000)] = 1200,
    height: Annotated[int | None, Query(ge=200, le=4000)] = None,
) -> Response:
    from app.services.reports.plots import score_vs_ground_truth_png

    batch = batch_view.get_batch(session, batch_id)
    name, truth, gt_alias = report_view.resolve_ground_truth(session, batch, ground_truth)
    aliases = method or [m.alias for m in batch.methods if m.alias != gt_alias]
    points: dict[str, list[tuple[float | None, float | None]]] = {}
    for alias in aliases:
        entry = batch_view.method_by_alias(batch, alias)
        seen: set[str] = set()
        pts = []
        for r in batch_view.method_rows(session, batch, entry):
            if r["key"] in seen or r["key"] not in truth:
                continue
            seen.add(r["key"])
            usable = r["status"] == "done" and r["score"] is not None and math.isfinite(r["score"])
            pts.append((truth[r["key"]], r["score"] if usable else None))
        points[alias] = pts
    png = score_vs_ground_truth_png(
        points, width_px=width, height_px=height, ground_truth_label=f"ground truth ({name})"
    )
    return Response(png, media_type="image/png")


@router.get(
    "/batches/{batch_id}/plots/cost_vs_spearman.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    summary="Mean cost per architecture vs Spearman ρ, one point per method/setting",
)
def plot_cost(
    batch_id: str,
    session: SessionDep,
    ground_truth: GroundTruthQuery = None,
    width: Annotated[int, Query(ge=200, le=4000)] = 900,
    height: Annotated[int, Query(ge=200, le=4000)] = 600,
) -> Response:
    from app.services.reports.plots import cost_vs_spearman_png

    batch = batch_view.get_batch(session, batch_id)
    result = report_view.report(session, [batch], ground_truth, None, report_view.parse_percents(None), 200)
    entries = []
    for alias, m in result["methods"].items():
        cost = result["costs"].get(alias, {}).get("mean_s")
        ci = m.get("spearman_ci") or {}
        entries.append(
            {
                "label": alias,
                "cost_s": cost,
                "spearman": m["spearman"],
                "ci_low": ci.get("low"),
                "ci_high": ci.get("high"),
            }
        )
    return Response(cost_vs_spearman_png(entries, width_px=width, height_px=height), media_type="image/png")


@router.get(
    "/batches/{batch_id}/export.csv", response_class=PlainTextResponse, summary="Every evaluation as CSV"
)
def export_csv(batch_id: str, session: SessionDep) -> Response:
    batch = batch_view.get_batch(session, batch_id)
    body = report_view.to_csv(report_view.export_rows(session, batch))
    return Response(
        body,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"'},
    )


@router.get("/batches/{batch_id}/export.json", summary="Every evaluation as JSON")
def export_json(batch_id: str, session: SessionDep) -> Response:
    batch = batch_view.get_batch(session, batch_id)
    rows = report_view.export_rows(session, batch)
    payload = {
        "batch_id": batch_id,
        "space": batch.space,
        "dataset": batch.dataset,
        "seed": batch.seed,
        "options": batch.options,
        "methods": [method_summary(m) for m in batch.methods],
        "rows": rows,
    }
    return Response(json.dumps(payload, allow_nan=False, default=str), media_type="application/json")
