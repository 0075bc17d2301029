"""Every evaluation of one architecture across batches."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.api.deps import SessionDep
from app.api.models import READ_ERRORS, ArchitectureView, problem_responses
from app.auth import PrincipalDep, visible_owner_filter
from app.errors import NotFound
from app.genotypes import SPACES, GenotypeError
from app.models import Architecture, Batch, BatchEvaluation, Evaluation
from app.schemas import SpaceName
from app.services.batch_view import evaluation_row, public

router = APIRouter(tags=["architectures"])

# DARTS and NB301 keys are sha256 hex digests of the canonical genotype (no spelling to parse).
_DIGEST_KEY = re.compile(r"[0-9a-f]{64}")


def _space_hint(session: Session, key: str, space: str) -> str:
    """Where the key does name an architecture (stored, or parsable as a genotype), say which
    ``?space=`` to add; a DARTS-style digest key is a darts or nb301 key."""
    stored = set(session.scalars(select(Architecture.space).where(Architecture.key == key)))
    parsable = set()
    for name, codec in SPACES.items():
        try:
            codec.parse(key)
        except GenotypeError:
            continue
        parsable.add(name)
    candidates = sorted((stored | parsable) - {space})
    if not candidates and _DIGEST_KEY.fullmatch(key):
        candidates = [name for name in ("darts", "nb301") if name != space]
    if not candidates:
        return "; for another space add ?space=<name>" if space == "nb201" else ""
    choice = "|".join(candidates)
    return f"; this key is an architecture of space {choice}: add ?space={choice}"


@router.get(
    "/architectures/{key}",
    response_model=ArchitectureView,
    summary="All evaluations of one architecture (key, canonical genotype or index)",
    responses=problem_responses(*READ_ERRORS),
)
def get_architecture(
    key: Annotated[str, Path(max_length=8192, description="stored key, genotype in any spelling, or index")],
    session: SessionDep,
    principal: PrincipalDep,
    space: Annotated[SpaceName, Query(description="search space of the key")] = "nb201",
) -> Any:
    arch = session.scalar(select(Architecture).where(Architecture.space == space, Architecture.key == key))
    if arch is None:
        # Accept the genotype in any spelling, or the benchmark index, as well as the stored key.
        try:
            by_index = key.isdigit() and SPACES[space].has_index and len(key) <= 12
            parsed = SPACES[space].from_index(int(key)) if by_index else SPACES[space].parse(key)
        except GenotypeError as exc:
            raise NotFound(
                f"architecture {key!r} in space {space!r}",
                f"it is no stored key, index or genotype of that space ({exc})"
                f"{_space_hint(session, key, space)}",
            ) from None
        arch = session.scalar(
            select(Architecture).where(Architecture.space == space, Architecture.key == parsed.key)
        )
    if arch is None:
        raise NotFound(f"architecture {key!r} in space {space!r}")
    query = select(Evaluation).where(Evaluation.architecture_id == arch.id)
    if not principal.is_admin:
        # Only evaluations that answer a batch the caller can see: others' results stay theirs.
        query = query.where(
            exists().where(
                BatchEvaluation.evaluation_id == Evaluation.id,
                Batch.id == BatchEvaluation.batch_id,
                visible_owner_filter(principal),
            )
        )
    evals = session.scalars(query.order_by(Evaluation.id))
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
