"""What the service supports: spaces, methods (config schemas, presets), datasets."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from app.api.deps import SettingsDep
from app.api.models import DatasetList, MethodList, SpaceList, problem_responses
from app.catalog.datasets import DATASETS, describe
from app.catalog.methods import all_methods
from app.genotypes import SPACES
from app.schemas import SpaceName

router = APIRouter(tags=["catalog"])


@router.get(
    "/spaces",
    response_model=SpaceList,
    summary="Search spaces with their ops, options and an example genotype",
)
def list_spaces() -> Any:
    return {
        "items": [
            {
                "name": name,
                "description": s.description,
                "ops": list(s.ops),
                "example": s.example,
                "has_index": s.has_index,
                "index_count": s.index_count,
                "network_options": _network_options(name),
            }
            for name, s in SPACES.items()
        ]
    }


def _network_options(space: str) -> dict[str, Any]:
    if space in ("nb201", "nats_sss"):
        return {"C": "initial channels (nb201 default 16)", "N": "cells per stage (nb201 default 5)"}
    return {
        "C": "initial channels (default 32)",
        "layers": "cells (default 8)",
        "auxiliary": "auxiliary head, 32x32 inputs only",
        "drop_path": "drop-path probability",
    }


# the catalogue's names as an enum in the schema (schema-valid queries are never rejected)
DatasetName = Literal[tuple(DATASETS)]  # type: ignore[valid-type]


@router.get(
    "/methods",
    response_model=MethodList,
    summary="Methods with their direction, config schema and presets (paper presets cost hours per "
    "architecture on a CPU: FEAR/shortreg ~3 h, full ~1 day; use 'tiny' or 'cpu' to try the service)",
    responses=problem_responses(422),
)
def list_methods(
    space: Annotated[SpaceName, Query(description="resolve presets for this space")] = "nb201",
    dataset: Annotated[
        DatasetName,  # type: ignore[valid-type]
        Query(description="resolve presets for this dataset"),
    ] = "cifar10",
) -> Any:
    items = []
    for name, info in all_methods().items():
        presets: dict[str, Any] = {}
        if space in info.spaces:
            for pname, fn in info.presets.items():
                try:
                    presets[pname] = info.config_model.model_validate(fn(space, dataset)).model_dump(
                        mode="json"
                    )
                except Exception as exc:  # a preset that does not apply to this pair says why
                    presets[pname] = {"unavailable": str(exc).splitlines()[0]}
        items.append(
            {
                "name": name,
                "family": info.family,
                "summary": info.summary,
                "higher_is_better": info.higher_is_better,
                "spaces": list(info.spaces),
                "default_preset": info.default_preset,
                "presets": presets,
                "config_schema": info.config_model.model_json_schema(),
            }
        )
    return {"space": space, "dataset": dataset, "items": items}


@router.get(
    "/datasets",
    response_model=DatasetList,
    summary="Datasets, whether their files are present for the workers, sizes, classes",
)
def list_datasets(settings: SettingsDep) -> Any:
    root = settings.effective_datasets_dir
    items = [describe(name, root, settings.cache_dir) for name in DATASETS]
    return {"datasets_dir": str(root), "cache_dir": str(settings.cache_dir), "items": items}
