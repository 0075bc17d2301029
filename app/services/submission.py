"""Batch submission: validate everything first, then one transaction, then enqueue.

Nothing is written unless the whole request is valid. The batch, its architectures and evaluations
are inserted in one transaction with insert-or-skip on the unique keys (so concurrent submissions of
the same architecture never duplicate work); tasks are enqueued only after the commit. If the
process dies between commit and enqueue, the sweeper finds the never-enqueued evaluations.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select, tuple_, update
from sqlalchemy.orm import Session

from app.catalog.datasets import DATASETS, DatasetUnavailable, require_available
from app.catalog.methods import ResolvedMethod, resolve
from app.errors import Conflict, InputError
from app.genotypes import GenotypeError, ParsedArch, get_space
from app.models import (
    FAILED,
    LOST,
    QUEUED,
    Architecture,
    Batch,
    BatchEvaluation,
    BatchItem,
    BatchMethod,
    Evaluation,
    GroundTruth,
    IdempotencyRecord,
    utcnow,
)
from app.schemas import BatchCreate
from app.services.sql import insert_ignore
from app.settings import Settings, get_settings

CHUNK = 500  # rows per multi-row statement: well under SQLite's bound-parameter limit


@dataclass
class PlannedMethod:
    alias: str
    position: int
    resolved: ResolvedMethod
    scope: str


@dataclass
class SubmissionResult:
    batch_id: str
    new: int
    reused: int
    retried: int
    items: int
    architectures: int
    methods: list[dict[str, Any]]
    to_enqueue: list[list[int]]  # task payloads: lists of evaluation ids
    replayed: bool = False
    stored_response: dict[str, Any] | None = None

    def response(self) -> dict[str, Any]:
        if self.stored_response is not None:
            return self.stored_response
        return {
            "batch_id": self.batch_id,
            "evaluations": {"new": self.new, "reused": self.reused, "retried": self.retried},
            "items": self.items,
            "architectures": self.architectures,
            "methods": self.methods,
            "status_url": f"/v1/batches/{self.batch_id}",
            "ranking_url": f"/v1/batches/{self.batch_id}/ranking",
        }


def request_hash(body: BatchCreate) -> str:
    blob = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_items(body: BatchCreate) -> list[ParsedArch]:
    space = get_space(body.space)
    parsed: list[ParsedArch] = []
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(body.items):
        try:
            if item.nb201_index is not None:
                if body.space != "nb201":
                    raise InputError(
                        ["body", "items", i, "nb201_index"],
                        f"nb201_index is only valid in space 'nb201' (this batch's space is {body.space!r}); "
                        "use 'index' or 'genotype'",
                    )
                parsed.append(space.from_index(item.nb201_index))
            elif item.index is not None:
                if not space.has_index:
                    raise InputError(
                        ["body", "items", i, "index"],
                        f"space {body.space!r} has no benchmark index; give 'genotype' instead",
                    )
                parsed.append(space.from_index(item.index))
            else:
                parsed.append(space.parse(item.genotype))
        except GenotypeError as exc:
            field = (
                "genotype"
                if item.genotype is not None
                else ("nb201_index" if item.nb201_index is not None else "index")
            )
            where = f"{exc.location}: " if exc.location else ""
            errors.append(
                {"loc": ["body", "items", i, field], "msg": where + exc.message, "type": "genotype_error"}
            )
        except InputError as exc:
            errors.extend(exc.errors)
        if len(errors) >= 50:  # enough to fix a whole class of mistakes; keep the response small
            break
    if errors:
        raise InputError.many(errors)
    return parsed


def plan_methods(body: BatchCreate, batch_id: str) -> list[PlannedMethod]:
    names = [m.name for m in body.methods]
    planned: list[PlannedMethod] = []
    seen_alias: dict[str, int] = {}
    seen_identity: dict[tuple[str, str], int] = {}
    for pos, m in enumerate(body.methods):
        loc: list[str | int] = ["body", "methods", pos]
        resolved = resolve(m.name, m.preset, m.config, body.space, body.dataset, loc)
        if m.alias:
            alias = m.alias
        elif names.count(m.name) == 1:
            alias = m.name
        else:
            alias = f"{m.name}@{resolved.preset}" if resolved.preset else f"{m.name}#{pos}"
            if (
                alias in seen_alias
                or [x.preset for x in body.methods if x.name == m.name].count(m.preset) > 1
            ):
                alias = f"{m.name}#{pos}"
        if alias in seen_alias:
            raise InputError(
                [*loc, "alias"],
                f"alias {alias!r} is already used by methods[{seen_alias[alias]}]; give a unique alias",
            )
        identity = (m.name, resolved.config_hash)
        if identity in seen_identity:
            raise InputError(
                loc,
                f"methods[{pos}] resolves to the same effective config as "
                f"methods[{seen_identity[identity]}]; "
                "remove the duplicate",
            )
        seen_alias[alias] = pos
        seen_identity[identity] = pos
        # A ratio-capped FEAR outcome depends on the other candidates of its batch, so such
        # evaluations are scoped to the batch instead of being shared across batches.
        capped = m.name == "fear" and body.options.ratio_to_fastest is not None
        planned.append(PlannedMethod(alias, pos, resolved, batch_id if capped else ""))
    return planned


def check_dataset(body: BatchCreate, settings: Settings) -> None:
    if body.dataset not in DATASETS:
        raise InputError(
            ["body", "dataset"], f"unknown dataset {body.dataset!r}; allowed: {', '.join(sorted(DATASETS))}"
        )
    try:
        require_available(body.dataset, settings.effective_datasets_dir)
    except DatasetUnavailable as exc:
        raise InputError(
            ["body", "dataset"],
            f"dataset {body.dataset!r} is not available on the workers: {exc}. Place the files there "
            "(or set FASTARCHRANK_DATASETS_DIR) and submit again",
        ) from None


def _chunks(seq: Sequence[Any], n: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _upsert_architectures(session: Session, archs: dict[str, ParsedArch], space: str) -> dict[str, int]:
    rows = [
        {
            "space": a.space,
            "key": a.key,
            "canonical": a.canonical,
            "index": a.index,
            "iso_key": a.iso_key,
            "degenerate": a.degenerate,
            "created_at": utcnow(),
        }
        for a in archs.values()
    ]
    table: Table = Architecture.__table__  # type: ignore[assignment]
    for chunk in _chunks(rows):
        session.execute(insert_ignore(session, table, ["space", "key"]), list(chunk))
    ids: dict[str, int] = {}
    keys = list(archs)
    for chunk in _chunks(keys):
        for arch_id, key in session.execute(
            select(Architecture.id, Architecture.key).where(
                Architecture.space == space, Architecture.key.in_(chunk)
            )
        ):
            ids[key] = arch_id
    return ids


def submit(
    session: Session,
    body: BatchCreate,
    settings: Settings,
    idempotency_key: str | None = None,
) -> SubmissionResult:
    digest = request_hash(body)
    if idempotency_key:
        record = session.get(IdempotencyRecord, idempotency_key)
        if record is not None:
            if record.request_hash != digest:
                raise Conflict(
                    "this Idempotency-Key was used with a different request body; "
                    "use a new key for a new batch"
                )
            return replay(record)

    check_dataset(body, settings)
    parsed = parse_items(body)
    batch_id = uuid.uuid4().hex
    planned = plan_methods(body, batch_id)

    unique: dict[str, ParsedArch] = {}
    for arch in parsed:
        unique.setdefault(arch.key, arch)

    now = utcnow()
    batch = Batch(
        id=batch_id,
        owner=body.owner,
        space=body.space,
        dataset=body.dataset,
        seed=body.seed,
        options=body.options.model_dump(mode="json"),
        request_hash=digest,
        created_at=now,
    )
    session.add(batch)
    method_rows = [
        BatchMethod(
            batch_id=batch_id,
            position=p.position,
            alias=p.alias,
            name=p.resolved.name,
            preset=p.resolved.preset,
            config=p.resolved.config,
            config_hash=p.resolved.config_hash,
            scope=p.scope,
        )
        for p in planned
    ]
    session.add_all(method_rows)
    session.flush()

    arch_ids = _upsert_architectures(session, unique, body.space)
    session.add_all(
        BatchItem(
            batch_id=batch_id,
            position=i,
            architecture_id=arch_ids[arch.key],
            label=item.label,
            ground_truth=item.ground_truth,
        )
        for i, (item, arch) in enumerate(zip(body.items, parsed, strict=True))
    )
    gt_set = body.options.ground_truth_set
    gt_rows: dict[int, float] = {}
    for item, arch in zip(body.items, parsed, strict=True):
        if item.ground_truth is not None:
            gt_rows[arch_ids[arch.key]] = item.ground_truth
    session.add_all(
        GroundTruth(batch_id=batch_id, set_name=gt_set, architecture_id=a, value=v)
        for a, v in gt_rows.items()
    )

    new, reused, retried, to_enqueue = _link_evaluations(
        session, batch_id, body, planned, method_rows, arch_ids
    )
    result = SubmissionResult(
        batch_id=batch_id,
        new=new,
        reused=reused,
        retried=retried,
        items=len(parsed),
        architectures=len(unique),
        methods=[method_summary(m) for m in method_rows],
        to_enqueue=to_enqueue,
    )
    if idempotency_key:
        session.add(
            IdempotencyRecord(
                key=idempotency_key, request_hash=digest, batch_id=batch_id, response=result.response()
            )
        )
    session.flush()
    return result


def method_summary(m: BatchMethod) -> dict[str, Any]:
    return {
        "alias": m.alias,
        "name": m.name,
        "preset": m.preset,
        "config_hash": m.config_hash,
        "config": m.config,
    }


def _link_evaluations(
    session: Session,
    batch_id: str,
    body: BatchCreate,
    planned: list[PlannedMethod],
    method_rows: list[BatchMethod],
    arch_ids: dict[str, int],
) -> tuple[int, int, int, list[list[int]]]:
    table: Table = Evaluation.__table__  # type: ignore[assignment]
    unique_cols = ["architecture_id", "dataset", "method", "config_hash", "seed", "scope"]
    now = utcnow()
    wanted: list[tuple[int, str, str, str, int, str]] = []
    rows: list[dict[str, Any]] = []
    for p in planned:
        for arch_id in arch_ids.values():
            ident = (arch_id, body.dataset, p.resolved.name, p.resolved.config_hash, body.seed, p.scope)
            wanted.append(ident)
            rows.append(
                {
                    **dict(zip(unique_cols, ident, strict=True)),
                    "config": p.resolved.config,
                    "status": QUEUED,
                    "attempts": 0,
                    "timings": {},
                    "info": {},
                    "progress": {},
                    "created_at": now,
                    "queued_at": now,
                }
            )
    # Which of these exist already (reuse) — read before inserting so "new" is exact.
    existing: dict[tuple, tuple[int, str]] = {}
    key_cols = tuple_(*(getattr(Evaluation, c) for c in unique_cols))
    for chunk in _chunks(wanted, 200):
        for r in session.execute(
            select(Evaluation.id, Evaluation.status, *(getattr(Evaluation, c) for c in unique_cols)).where(
                key_cols.in_(list(chunk))
            )
        ):
            existing[tuple(r[2:])] = (r[0], r[1])
    fresh_rows = [row for ident, row in zip(wanted, rows, strict=True) if ident not in existing]
    for chunk in _chunks(fresh_rows):
        session.execute(insert_ignore(session, table, unique_cols), list(chunk))
    ids: dict[tuple, tuple[int, str]] = dict(existing)
    missing = [w for w in wanted if w not in ids]
    for chunk in _chunks(missing, 200):
        for r in session.execute(
            select(Evaluation.id, Evaluation.status, *(getattr(Evaluation, c) for c in unique_cols)).where(
                key_cols.in_(list(chunk))
            )
        ):
            ids[tuple(r[2:])] = (r[0], r[1])

    # Failed or lost evaluations are given another chance when someone asks for them again.
    retry_ids = [eid for ident, (eid, status) in existing.items() if status in (FAILED, LOST)]
    for chunk in _chunks(retry_ids):
        session.execute(
            update(Evaluation)
            .where(Evaluation.id.in_(list(chunk)), Evaluation.status.in_([FAILED, LOST]))
            .values(status=QUEUED, attempts=0, error=None, queued_at=now, worker=None)
        )

    links = []
    alias_by_pos = {p.position: m for p, m in zip(planned, method_rows, strict=True)}
    family_by_eval: dict[int, str] = {}
    arch_by_eval: dict[int, int] = {}
    for p in planned:
        m = alias_by_pos[p.position]
        for arch_id in arch_ids.values():
            ident = (arch_id, body.dataset, p.resolved.name, p.resolved.config_hash, body.seed, p.scope)
            eid = ids[ident][0]
            links.append({"batch_id": batch_id, "batch_method_id": m.id, "evaluation_id": eid})
            family_by_eval[eid] = p.resolved.family
            arch_by_eval[eid] = arch_id
    bt: Table = BatchEvaluation.__table__  # type: ignore[assignment]
    for chunk in _chunks(links):
        session.execute(
            insert_ignore(session, bt, ["batch_id", "batch_method_id", "evaluation_id"]), list(chunk)
        )

    new_ids = [ids[w][0] for w in wanted if w not in existing]
    new_ids = list(dict.fromkeys(new_ids))
    to_run = new_ids + retry_ids
    payloads = group_payloads(to_run, family_by_eval.__getitem__, arch_by_eval.__getitem__)
    reused = len({ids[w][0] for w in wanted if w in existing}) - len(retry_ids)
    return len(new_ids), reused, len(retry_ids), payloads


def group_payloads(
    eval_ids: Iterable[int], family_of: Callable[[int], str], arch_of: Callable[[int], int]
) -> list[list[int]]:
    """Training evaluations run one per task. An architecture's zero-cost evaluations share one task
    (the network is built once and every measure gets a copy of the same initial weights), and
    several architectures share a task so that the per-task cost (broker round trip, claim, store)
    is amortised over many millisecond-scale measures."""
    per_task = get_settings().zero_cost_archs_per_task
    grouped: dict[int, list[int]] = {}
    payloads: list[list[int]] = []
    for eid in eval_ids:
        if family_of(eid) == "training":
            payloads.append([eid])
        else:
            grouped.setdefault(arch_of(eid), []).append(eid)
    groups = list(grouped.values())
    for i in range(0, len(groups), per_task):
        payloads.append([eid for group in groups[i : i + per_task] for eid in group])
    return payloads


def replay(record: IdempotencyRecord) -> SubmissionResult:
    """The stored response of an earlier submission with the same Idempotency-Key and body."""
    return SubmissionResult(
        batch_id=record.batch_id,
        new=0,
        reused=0,
        retried=0,
        items=0,
        architectures=0,
        methods=[],
        to_enqueue=[],
        replayed=True,
        stored_response=record.response,
    )
