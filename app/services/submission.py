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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.catalog.datasets import DATASETS, DatasetUnavailable, read_split_file, require_available
from app.catalog.methods import ResolvedMethod, resolve
from app.db import is_retryable_conflict, retrying, session_scope
from app.errors import Conflict, InputError
from app.genotypes import GenotypeError, ParsedArch, get_space
from app.lifecycle import EvaluationSpec, Linked, link_or_reuse
from app.models import (
    Architecture,
    Batch,
    BatchEvaluation,
    BatchItem,
    BatchMethod,
    Evaluation,
    GroundTruth,
    IdempotencyRecord,
    Search,
    utcnow,
)
from app.schemas import BatchCreate
from app.services.fleet import DeviceClass, any_worker_advertised, check_queues, route
from app.services.sql import MAX_PARAMS, chunks, insert_ignore, insert_select, rows_source
from app.settings import Settings, get_settings


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
    published: bool = True
    warnings: list[str] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        if self.stored_response is not None:
            # The original counters, marked as a replay: summing replays must not count rows twice.
            return {**self.stored_response, "replayed": True}
        return {
            "batch_id": self.batch_id,
            "evaluations": {"new": self.new, "reused": self.reused, "retried": self.retried},
            "items": self.items,
            "architectures": self.architectures,
            "methods": self.methods,
            "status_url": f"/v1/batches/{self.batch_id}",
            "ranking_url": f"/v1/batches/{self.batch_id}/ranking",
            "published": self.published,
            "warnings": list(self.warnings),
            "replayed": False,
        }


SEARCH_SCOPE_PREFIX = "search:"


def search_scope(search_id: str, ratio: float, basis: str = "seconds") -> str:
    """The evaluations.scope (32 characters) of a search's capped FEAR evaluations (a cap in steps
    is another search than one in seconds; the seconds scope keeps its historical digest)."""
    key = f"{search_id}|{ratio!r}" + ("" if basis == "seconds" else f"|{basis}")
    digest = hashlib.sha256(key.encode()).hexdigest()
    return SEARCH_SCOPE_PREFIX + digest[: 32 - len(SEARCH_SCOPE_PREFIX)]


def request_hash(body: BatchCreate) -> str:
    dumped = body.model_dump(mode="json")
    # Bodies from before an option existed keep their hash (stored Idempotency-Keys replay).
    later_options: tuple[tuple[str, Any], ...] = (
        ("search_id", None),
        ("device_class", None),
        ("ratio_basis", "seconds"),
        ("composites", None),
        ("funnel", None),
        ("max_failed", None),
    )
    for option, default in later_options:
        if dumped["options"].get(option) == default:
            dumped["options"].pop(option, None)
    blob = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
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
        scope = ""
        if capped:
            ratio = body.options.ratio_to_fastest
            search = body.options.search_id
            basis = body.options.ratio_basis
            scope = search_scope(search, float(ratio), basis) if search and ratio is not None else batch_id
        planned.append(PlannedMethod(alias, pos, resolved, scope))
    check_composites(body, [p.alias for p in planned])
    return planned


def _stored_options(body: BatchCreate, stage2: list[PlannedMethod]) -> dict[str, Any]:
    options = body.options.model_dump(mode="json")
    for later_option in ("composites", "funnel"):  # absent rather than null, as before they existed
        if options.get(later_option) is None:
            options.pop(later_option, None)
    if body.options.funnel is not None:
        from app.services.funnel import STAGE_KEY, initial_stage

        options[STAGE_KEY] = initial_stage([p.alias for p in stage2])
    return options


def plan_funnel(body: BatchCreate, planned: list[PlannedMethod], batch_id: str) -> list[PlannedMethod]:
    """The funnel's expensive entries (positions after the batch's methods), its measure checked
    against the batch's aliases and named composites. Empty without a funnel."""
    funnel = body.options.funnel
    if funnel is None:
        return []
    from app.services.reports.composite import CompositeSpecError, is_composite, parse_composite_spec

    loc: list[str | int] = ["body", "options", "funnel"]
    aliases = [p.alias for p in planned]
    named = body.options.composites or {}
    measure = funnel.measure
    if measure not in aliases and measure not in named:
        if not is_composite(measure):
            raise InputError(
                [*loc, "measure"],
                f"the funnel's measure {measure!r} is none of this batch's methods {aliases} or named "
                f"composites {sorted(named)}; name one, or write composite:<alias>+<alias>...",
            )
        try:
            parse_composite_spec(measure, available=aliases)
        except CompositeSpecError as exc:
            raise InputError([*loc, "measure"], exc.message) from None
    stage2: list[PlannedMethod] = []
    seen = {a: i for i, a in enumerate(aliases)} | {n: -1 for n in named}
    for i, m in enumerate(funnel.then):
        entry_loc: list[str | int] = [*loc, "then", i]
        position = len(body.methods) + i
        resolved = resolve(m.name, m.preset, m.config, body.space, body.dataset, entry_loc)
        alias = m.alias or m.name
        if alias in seen:
            raise InputError(
                [*entry_loc, "alias"],
                f"alias {alias!r} is already used in this batch; give this funnel entry a unique alias",
            )
        seen[alias] = position
        capped = m.name == "fear" and body.options.ratio_to_fastest is not None
        scope = ""
        if capped:
            ratio, search = body.options.ratio_to_fastest, body.options.search_id
            scope = search_scope(search, float(ratio)) if search and ratio is not None else batch_id
        stage2.append(PlannedMethod(alias, position, resolved, scope))
    return stage2


def check_composites(body: BatchCreate, aliases: list[str]) -> None:
    """Every named composite names only this batch's method aliases, and no name shadows an alias."""
    from app.services.reports.composite import CompositeSpecError, parse_composite_spec

    errors: list[dict[str, Any]] = []
    for name, spec in (body.options.composites or {}).items():
        loc = ["body", "options", "composites", name]
        if name in aliases:
            errors.append(
                {
                    "loc": loc,
                    "msg": f"composite name {name!r} is already a method alias; rename it",
                    "type": "value_error",
                }
            )
            continue
        try:
            parse_composite_spec(spec, available=aliases)
        except CompositeSpecError as exc:
            errors.append({"loc": loc, "msg": exc.message, "type": "value_error"})
    if errors:
        raise InputError.many(errors)


def check_dataset(body: BatchCreate, settings: Settings) -> None:
    if body.dataset not in DATASETS:
        raise InputError(
            ["body", "dataset"], f"unknown dataset {body.dataset!r}; allowed: {', '.join(sorted(DATASETS))}"
        )


def routed_classes(body: BatchCreate, planned: list[PlannedMethod], settings: Settings) -> list[DeviceClass]:
    """The device class of each planned method entry (same order)."""
    pinned = body.options.device_class
    return [route(p.resolved.name, p.resolved.family, p.resolved.preset, pinned, settings) for p in planned]


def option_warnings(body: BatchCreate) -> list[str]:
    """Options that are valid but do nothing for this batch: accepted, and said so."""
    if body.options.ratio_to_fastest is not None and not any(m.name == "fear" for m in body.methods):
        return [
            "options.ratio_to_fastest has no effect: it caps FEAR's stage 1, and this batch runs no 'fear' "
            "method"
        ]
    return []


def check_fleet(
    session: Session,
    body: BatchCreate,
    classes: list[DeviceClass],
    settings: Settings,
    planned: list[PlannedMethod] | None = None,
) -> list[str]:
    """The dataset must be on a live worker that consumes each routed queue: 422 if the workers that
    would run the work lack its files. Before any worker has advertised itself, the API's own files
    decide (one host), and so they do for a queue no live worker consumes. Returns warnings (a
    routed queue nobody consumes: the work waits)."""
    if not any_worker_advertised(session):
        check_local_dataset(body, settings, planned)
        return []
    warnings: list[str] = []
    for a in check_queues(session, settings, classes, body.dataset):
        if a.consumers == 0:
            # Nobody live to ask: the API's own files decide, as on one host.
            check_local_dataset(body, settings, planned)
            warnings.append(
                f"no live worker consumes {a.device_class} work (queue {a.queue!r}): its evaluations stay "
                f"queued until one starts (`fastarchrank worker --queues {a.device_class},any`), or pin the "
                "batch with options.device_class"
            )
        elif a.with_dataset == 0:
            raise InputError(
                ["body", "dataset"],
                f"dataset {body.dataset!r} is not available on the workers: no live worker for "
                f"{a.device_class} work has {body.dataset} files ({a.consumers} consume "
                f"queue {a.queue!r}); place the files in their datasets folder (FASTARCHRANK_DATASETS_DIR) "
                f"as {_layout(body.dataset)}, or pin the batch to workers that have it with "
                "options.device_class",
            )
    return warnings


def _layout(dataset: str) -> str:
    from app.catalog.datasets import get_dataset

    try:
        return get_dataset(dataset).layout
    except ValueError:
        return "the dataset's documented layout (GET /v1/datasets)"


def check_local_dataset(
    body: BatchCreate, settings: Settings, planned: list[PlannedMethod] | None = None
) -> None:
    try:
        require_available(body.dataset, settings.effective_datasets_dir)
        # A method evaluating one half of the test split also needs the benchmark's split file.
        if any(
            (p.resolved.config.get("data") or {}).get("test_split", "all") != "all" for p in planned or []
        ):
            read_split_file(body.dataset, settings.effective_datasets_dir)
    except DatasetUnavailable as exc:
        raise InputError(
            ["body", "dataset"],
            f"dataset {body.dataset!r} is not available on the workers: {exc}. Place the files there "
            "(or set FASTARCHRANK_DATASETS_DIR) and submit again",
        ) from None


def _register_search(session: Session, body: BatchCreate, planned: list[PlannedMethod]) -> None:
    scopes = sorted({p.scope for p in planned if p.scope.startswith(SEARCH_SCOPE_PREFIX)})
    if not scopes or body.options.search_id is None or body.options.ratio_to_fastest is None:
        return
    table: Table = Search.__table__  # type: ignore[assignment]
    session.execute(
        insert_ignore(session, table, ["scope"]),
        [
            {
                "scope": s,
                "search_id": body.options.search_id,
                "ratio_to_fastest": body.options.ratio_to_fastest,
                "ratio_basis": body.options.ratio_basis,
                "created_at": utcnow(),
            }
            for s in scopes
        ],
    )


def _upsert_architectures(session: Session, archs: dict[str, ParsedArch], space: str) -> dict[str, int]:
    """Insert-or-skip every architecture in one statement, then read the ids of those that existed.
    Rows go in key order, so concurrent overlapping submissions lock them in one order (inserting
    in request order let two requests deadlock on each other's keys)."""
    if not archs:
        return {}
    keys = sorted(archs)
    table: Table = Architecture.__table__  # type: ignore[assignment]
    stmt = insert_select(
        session,
        table,
        {
            "key": (String(), keys),
            "canonical": (Text(), [archs[k].canonical for k in keys]),
            "index": (Integer(), [archs[k].index for k in keys]),
            "iso_key": (String(), [archs[k].iso_key for k in keys]),
            "degenerate": (Boolean(), [bool(archs[k].degenerate) for k in keys]),
        },
        {"space": (String(), space), "created_at": (DateTime(timezone=True), utcnow())},
        conflict_cols=["space", "key"],
    )
    ids: dict[str, int] = {
        key: arch_id for arch_id, key in session.execute(stmt.returning(Architecture.id, Architecture.key))
    }
    missing = [k for k in keys if k not in ids]
    if missing:
        (key_col,) = rows_source(session, [(String(), missing)])
        for arch_id, key in session.execute(
            select(Architecture.id, Architecture.key).where(
                Architecture.space == space, Architecture.key.in_(select(key_col))
            )
        ):
            ids[key] = arch_id
    return ids


def _method_row(batch_id: str, p: PlannedMethod) -> BatchMethod:
    return BatchMethod(
        batch_id=batch_id,
        position=p.position,
        alias=p.alias,
        name=p.resolved.name,
        preset=p.resolved.preset,
        config=p.resolved.config,
        config_hash=p.resolved.config_hash,
        scope=p.scope,
    )


def submit(
    session: Session,
    body: BatchCreate,
    settings: Settings,
    idempotency_key: str | None = None,
    owner: str | None = None,
) -> SubmissionResult:
    """``idempotency_key`` is the stored (owner-scoped) form; ``owner`` is stored on the batch
    (default: the body's ``owner``)."""
    digest = request_hash(body)
    if idempotency_key:
        record = session.get(IdempotencyRecord, idempotency_key)
        if record is not None and _expired(record, settings):
            # The key is free again: the stale record goes, this request is a new submission. A
            # conditional delete, so two requests doing this at once cannot trip over each other
            # (the loser's insert of the new record then conflicts and it replays the winner's).
            session.execute(
                delete(IdempotencyRecord)
                .where(
                    IdempotencyRecord.key == idempotency_key,
                    IdempotencyRecord.created_at == record.created_at,
                )
                .execution_options(synchronize_session=False)
            )
            session.expunge(record)
            record = None
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
    stage2 = plan_funnel(body, planned, batch_id)
    classes = routed_classes(body, planned, settings)
    fleet_warnings = check_fleet(session, body, classes, settings, planned) + option_warnings(body)

    unique: dict[str, ParsedArch] = {}
    for arch in parsed:
        unique.setdefault(arch.key, arch)

    now = utcnow()
    batch = Batch(
        id=batch_id,
        owner=owner if owner is not None else body.owner,
        space=body.space,
        dataset=body.dataset,
        seed=body.seed,
        options=_stored_options(body, stage2),
        request_hash=digest,
        created_at=now,
    )
    session.add(batch)
    method_rows = [_method_row(batch_id, p) for p in planned]
    session.add_all(method_rows)
    # a funnel's expensive entries: method entries without evaluations until the cheap stage ends
    stage2_rows = [_method_row(batch_id, p) for p in stage2]
    session.add_all(stage2_rows)
    session.flush()

    _register_search(session, body, planned + stage2)
    arch_ids = _upsert_architectures(session, unique, body.space)
    item_archs = [arch_ids[arch.key] for arch in parsed]
    session.execute(
        insert_select(
            session,
            BatchItem.__table__,  # type: ignore[arg-type]
            {
                "position": (Integer(), list(range(len(parsed)))),
                "architecture_id": (BigInteger(), item_archs),
                "label": (String(), [item.label for item in body.items]),
                "ground_truth": (Float(), [item.ground_truth for item in body.items]),
            },
            {"batch_id": (String(), batch_id)},
        )
    )
    gt_rows: dict[int, float] = {}
    for item, arch_id in zip(body.items, item_archs, strict=True):
        if item.ground_truth is not None:
            gt_rows[arch_id] = item.ground_truth
    if gt_rows:
        gt_archs = sorted(gt_rows)
        session.execute(
            insert_select(
                session,
                GroundTruth.__table__,  # type: ignore[arg-type]
                {
                    "architecture_id": (BigInteger(), gt_archs),
                    "value": (Float(), [gt_rows[a] for a in gt_archs]),
                },
                {
                    "batch_id": (String(), batch_id),
                    "set_name": (String(), body.options.ground_truth_set),
                    "updated_at": (DateTime(timezone=True), now),
                },
            )
        )

    new, reused, retried, to_enqueue = _link_evaluations(
        session, batch_id, body, planned, method_rows, arch_ids, classes
    )
    result = SubmissionResult(
        batch_id=batch_id,
        new=new,
        reused=reused,
        retried=retried,
        items=len(parsed),
        architectures=len(unique),
        methods=[method_summary(m) for m in method_rows + stage2_rows],
        to_enqueue=to_enqueue,
        warnings=fleet_warnings,
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
    classes: list[DeviceClass],
) -> tuple[int, int, int, list[list[int]]]:
    specs = [
        EvaluationSpec(p.resolved.name, p.resolved.config_hash, p.scope, p.resolved.config) for p in planned
    ]
    archs = sorted(set(arch_ids.values()))
    linked = link_or_reuse(session, body.dataset, body.seed, specs, archs)
    pairs = [(m.id, linked.ids[(pos, a)]) for pos, m in enumerate(method_rows) for a in archs]
    session.execute(
        insert_select(
            session,
            BatchEvaluation.__table__,  # type: ignore[arg-type]
            {
                "batch_method_id": (BigInteger(), [m for m, _ in pairs]),
                "evaluation_id": (BigInteger(), [e for _, e in pairs]),
            },
            {"batch_id": (String(), batch_id)},
        )
    )
    family_by_eval: dict[int, str] = {}
    arch_by_eval: dict[int, int] = {}
    for (pos, a), eid in linked.ids.items():
        family_by_eval[eid] = planned[pos].resolved.family
        arch_by_eval[eid] = a
    to_run = linked.new + linked.retried
    _record_routes(session, linked, classes)
    payloads = group_payloads(to_run, family_by_eval.__getitem__, arch_by_eval.__getitem__)
    return len(linked.new), len(linked.reused), len(linked.retried), payloads


def _record_routes(session: Session, linked: Linked, classes: list[DeviceClass]) -> None:
    """Store the device class of every evaluation this submission (re)queued: each later publish
    (this request's, the sweeper's, the reaper's) sends it to the same queue."""
    to_run = set(linked.new) | set(linked.retried)
    by_class: dict[DeviceClass, list[int]] = {}
    for (pos, _arch), eid in linked.ids.items():
        if eid in to_run:
            by_class.setdefault(classes[pos], []).append(eid)
    for cls, ids in sorted(by_class.items()):
        for part in chunks(sorted(set(ids)), MAX_PARAMS):
            session.execute(
                update(Evaluation)
                .where(Evaluation.id.in_(list(part)))
                .values(device_class=cls)
                .execution_options(synchronize_session=False)
            )


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


def _expired(record: IdempotencyRecord, settings: Settings) -> bool:
    created = record.created_at
    if created.tzinfo is None:  # SQLite hands back naive datetimes; every stored time is UTC
        created = created.replace(tzinfo=UTC)
    return utcnow() - created > timedelta(seconds=settings.idempotency_ttl_s)


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


BROKER_DOWN_WARNING = (
    "the broker could not be reached: the batch is stored and its evaluations are queued; "
    "they will be published automatically once the broker is back (within about {s:.0f} s of that)"
)


def create(
    body: BatchCreate, settings: Settings, idempotency_key: str | None = None, owner: str | None = None
) -> SubmissionResult:
    """Submit in its own transaction, then publish. The transaction runs again (a bounded number of
    times) after a deadlock or serialization failure, and once after a concurrent request with the
    same Idempotency-Key won the race (this one then answers with that request's response)."""

    def once() -> SubmissionResult:
        with session_scope() as session:
            return submit(session, body, settings, idempotency_key, owner)

    def retryable(exc: BaseException) -> bool:
        return is_retryable_conflict(exc) or (idempotency_key is not None and isinstance(exc, IntegrityError))

    result = retrying(
        once, settings.submit_retry_attempts, 0.05, retry_if=retryable, what="submission transaction"
    )
    if not result.replayed and result.to_enqueue:
        from app.services.queue import enqueue

        out = enqueue(result.to_enqueue)
        if not out.complete:
            result.published = False
            result.warnings.append(
                BROKER_DOWN_WARNING.format(s=settings.requeue_after_s + settings.sweep_interval_s)
            )
    return result
