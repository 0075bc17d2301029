"""Every evaluation of one architecture across batches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.api.deps import SessionDep
from app.errors import InputError, NotFound
from app.genotypes import SPACES, GenotypeError
from app.models import Architecture, Evaluation
from app.services.batch_view import evaluation_row, public

router = APIRouter(tags=["architectures"])


@router.get(
    "/architectures/{key}", summary="All evaluations of one architecture (key, canonical genotype or index)"
)
def get_architecture(
    key: str,
    session: SessionDep,
    space: Annotated[str, Query(description="search space of the key")] = "nb201",
) -> Any:
    if space not in SPACES:
        raise InputError(["query", "space"], f"unknown space {space!r}; allowed: {', '.join(SPACES)}")
    arch = session.scalar(select(Architecture).where(Architecture.space == space, Architecture.key == key))
    if arch is None:
        # Accept the genotype in any spelling, or the benchmark index, as well as the stored key.
        try:
            parsed = SPACES[space].from_index(int(key)) if key.isdigit() else SPACES[space].parse(key)
        except GenotypeError as exc:
            raise NotFound(f"architecture {key!r} in space {space!r} ({exc})") from None
        arch = session.scalar(
            select(Architecture).where(Architecture.space == space, Architecture.key == parsed.key)
        )
    if arch is None:
        raise NotFound(f"architecture {key!r} in space {space!r}")
    evals = session.scalars(
        select(Evaluation).where(Evaluation.architecture_id == arch.id).order_by(Evaluation.id)
    )
    return {
        "space": arch.space,
        "key": arch.key,
        "genotype": arch.canonical,
        "index": arch.index,
        "iso_key": arch.iso_key,
        "degenerate": arch.degenerate,
        "evaluations": [
            {**public(evaluation_row(ev, arch)), "dataset": ev.dataset, "config": ev.config} for ev in evals
        ],
    }
