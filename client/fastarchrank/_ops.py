"""The client's operations, written once for both the sync and the async client.

Each operation is a generator that yields the HTTP calls it needs (``Call``) and receives each
answer's decoded body; the sync client drives it with blocking requests, the async client with
awaited ones. So paging, splitting and merging logic exists exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fastarchrank.errors import FastArchRankError
from fastarchrank.models import (
    BatchCancelled,
    BatchCreated,
    BatchStatus,
    Export,
    ExportRow,
    GroundTruthPut,
    GroundTruthStored,
    Health,
    Ranking,
    RankingItem,
    Report,
    Score,
)

Decode = Literal["json", "text", "bytes"]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: Any = None
    json: Any = None
    headers: dict[str, str] | None = None
    decode: Decode = "json"


Op = Generator[Call, Any, Any]

Item = str | int | Mapping[str, Any]
MethodArg = str | Mapping[str, Any]
PLOTS = {
    "score_vs_ground_truth": "score_vs_ground_truth.png",
    "cost_vs_spearman": "cost_vs_spearman.png",
}
_ITEM_KEYS = {"genotype", "nb201_index", "index", "label", "ground_truth"}


def item_body(item: Item, space: str) -> dict[str, Any]:
    """One request item from a genotype string, a benchmark index or a dict (label/ground truth)."""
    if isinstance(item, bool):
        raise TypeError("an item is a genotype string, an int index or a dict, not a bool")
    if isinstance(item, str):
        return {"genotype": item}
    if isinstance(item, int):
        return {"nb201_index": item} if space == "nb201" else {"index": item}
    if isinstance(item, Mapping):
        unknown = set(item) - _ITEM_KEYS
        if unknown:
            raise ValueError(f"unknown item keys {sorted(unknown)}; allowed: {sorted(_ITEM_KEYS)}")
        return {k: v for k, v in item.items() if v is not None}
    raise TypeError(f"an item is a genotype string, an int index or a dict, not {type(item).__name__}")


def method_body(method: MethodArg) -> dict[str, Any]:
    if isinstance(method, str):
        return {"name": method}
    return {k: v for k, v in method.items() if v is not None}


def part_key(key: str, part: int, parts: int) -> str:
    """Idempotency key of one part of a split submission: stable for the same logical key."""
    return key if parts == 1 else f"{key[:100]}.p{part + 1}of{parts}"


def limits_op() -> Op:
    """The server's ``max_items_per_batch``: from /v1/health's limits when it states them, else the
    ``maxItems`` of ``BatchCreate.items`` in the OpenAPI schema; None when neither says."""
    try:
        health = Health.model_validate((yield Call("GET", "/v1/health")))
        if health.limits.get("max_items_per_batch"):
            return int(health.limits["max_items_per_batch"])
    except FastArchRankError:
        pass  # a health answer of 503 (degraded) or 401 still leaves the schema to ask
    try:
        spec = yield Call("GET", "/openapi.json")
    except FastArchRankError:
        return None  # no limit known: submit in one piece and let the server say if it is too big
    schema = spec.get("components", {}).get("schemas", {}).get("BatchCreate", {})
    limit = schema.get("properties", {}).get("items", {}).get("maxItems")
    return int(limit) if limit else None


@dataclass(frozen=True)
class Part:
    """One server batch of a (possibly split) logical batch: its id and its items' offset."""

    batch_id: str
    offset: int
    items: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    created: BatchCreated | None = field(default=None, repr=False)


def submit_op(body: dict[str, Any], items: list[dict[str, Any]], key: str, max_items: int | None) -> Op:
    size = max_items if max_items and max_items > 0 else max(1, len(items))
    chunks = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
    parts: list[Part] = []
    for n, chunk in enumerate(chunks):
        created = BatchCreated.model_validate(
            (
                yield Call(
                    "POST",
                    "/v1/batches",
                    json={**body, "items": chunk},
                    headers={"Idempotency-Key": part_key(key, n, len(chunks))},
                )
            )
        )
        parts.append(Part(created.batch_id, n * size, tuple(chunk), created))
    return parts


def status_op(parts: Sequence[Part]) -> Op:
    out = []
    for part in parts:
        out.append(BatchStatus.model_validate((yield Call("GET", f"/v1/batches/{part.batch_id}"))))
    return out


def _average_ranks(items: list[RankingItem], higher_is_better: bool) -> list[RankingItem]:
    """Re-rank rows merged from several server batches the way the server ranks one: usable scores
    by direction, ties share the average rank, everything else unranked after them."""
    usable = [r for r in items if r.usable]
    rest = [r for r in items if not r.usable]
    usable.sort(key=lambda r: (-(r.score or 0.0) if higher_is_better else (r.score or 0.0), r.position))
    ranked: list[RankingItem] = []
    i = 0
    while i < len(usable):
        j = i
        while j + 1 < len(usable) and usable[j + 1].score == usable[i].score:
            j += 1
        rank = (i + j) / 2 + 1
        ranked.extend(r.model_copy(update={"rank": rank}) for r in usable[i : j + 1])
        i = j + 1
    return ranked + [r.model_copy(update={"rank": None}) for r in rest]


def ranking_op(parts: Sequence[Part], method: str | None, page: int = 1000) -> Op:
    """Every row of one method's ranking over every part (all pages), best first."""
    rows: list[RankingItem] = []
    first: Ranking | None = None
    for part in parts:
        got = 0
        while True:
            params: dict[str, Any] = {"limit": page, "offset": got}
            if method:
                params["method"] = method
            ranking = Ranking.model_validate(
                (yield Call("GET", f"/v1/batches/{part.batch_id}/ranking", params=params))
            )
            first = first or ranking
            rows.extend(ranking.items)
            got += len(ranking.items)
            if not ranking.items or got >= ranking.total:
                break
    assert first is not None
    if len(parts) > 1:
        # ``position`` is the place in the listing: renumber it over the merged listing.
        rows = [
            r.model_copy(update={"position": n})
            for n, r in enumerate(_average_ranks(rows, first.higher_is_better), start=1)
        ]
    return Ranking(
        batch_id=",".join(p.batch_id for p in parts),
        method=first.method,
        higher_is_better=first.higher_is_better,
        items=rows,
        total=len(rows),
        limit=len(rows),
        offset=0,
    )


def score_of(row: ExportRow, offset: int = 0) -> Score:
    reason = row.reason or row.error
    value = row.score
    if row.status == "done" and (value is None or not math.isfinite(value) or row.finite is False):
        value = None
        reason = reason or f"non-finite score ({row.score_kind or 'nan'})"
    elif row.status != "done":
        value = None
        reason = reason or row.status
    return Score(
        position=row.item_position + offset,
        label=row.label,
        genotype=row.genotype,
        score=value,
        status=row.status,
        reason=reason,
        cost_s=row.cost_s,
        evaluation_id=row.evaluation_id,
        architecture_key=row.architecture_key,
    )


def cancel_op(parts: Sequence[Part]) -> Op:
    out = []
    for part in parts:
        out.append(BatchCancelled.model_validate((yield Call("POST", f"/v1/batches/{part.batch_id}/cancel"))))
    return out


def delete_op(parts: Sequence[Part]) -> Op:
    # 204 with no body: decoded as text so an empty answer is not parsed as JSON.
    for part in parts:
        yield Call("DELETE", f"/v1/batches/{part.batch_id}", decode="text")
    return None


def export_op(parts: Sequence[Part]) -> Op:
    out = []
    for part in parts:
        out.append(Export.model_validate((yield Call("GET", f"/v1/batches/{part.batch_id}/export.json"))))
    return out


def scores_op(parts: Sequence[Part], method: str | None) -> Op:
    """Every item's score under ``method`` (default: the batch's first), in submission order."""
    exports: list[Export] = yield from export_op(parts)
    alias = method or exports[0].aliases[0]
    if alias not in exports[0].aliases:
        raise ValueError(f"method {alias!r} is not in this batch; it has {', '.join(exports[0].aliases)}")
    out = [
        score_of(row, part.offset)
        for part, export in zip(parts, exports, strict=True)
        for row in export.rows
        if row.method == alias
    ]
    return sorted(out, key=lambda s: s.position)


def records_op(parts: Sequence[Part]) -> Op:
    exports: list[Export] = yield from export_op(parts)
    records: list[dict[str, Any]] = []
    for part, export in zip(parts, exports, strict=True):
        for row in export.rows:
            s = score_of(row, part.offset)
            records.append(
                {
                    "position": s.position,
                    "label": row.label,
                    "genotype": row.genotype,
                    "index": row.index,
                    "method": row.method,
                    "status": row.status,
                    "score": s.score,
                    "reason": s.reason,
                    "cost_s": row.cost_s,
                    "ground_truth": row.ground_truth,
                    "architecture_key": row.architecture_key,
                    "evaluation_id": row.evaluation_id,
                    "batch_id": export.batch_id,
                }
            )
    return sorted(records, key=lambda r: (r["position"], r["method"]))


def report_op(
    parts: Sequence[Part], ground_truth: str | None, methods: Sequence[str] | None, markdown: bool
) -> Op:
    fmt = "markdown" if markdown else "json"
    if len(parts) == 1:
        params: dict[str, Any] = {"format": fmt}
        if ground_truth:
            params["ground_truth"] = ground_truth
        if methods:
            params["method"] = list(methods)
        call = Call("GET", f"/v1/batches/{parts[0].batch_id}/report", params=params, decode="text")
    else:
        body: dict[str, Any] = {"batch_ids": [p.batch_id for p in parts]}
        if ground_truth:
            body["ground_truth"] = ground_truth
        if methods:
            body["methods"] = list(methods)
        call = Call("POST", "/v1/reports", params={"format": fmt}, json=body, decode="text")
    text: str = yield call
    return text if markdown else Report.model_validate_json(text)


def plot_op(part: Part, name: str, params: Mapping[str, Any]) -> Op:
    if name not in PLOTS:
        raise ValueError(f"unknown plot {name!r}; choose one of {sorted(PLOTS)}")
    path = f"/v1/batches/{part.batch_id}/plots/{PLOTS[name]}"
    png: bytes = yield Call("GET", path, params=dict(params) or None, decode="bytes")
    return png


def ground_truth_items(
    values: Mapping[Any, float] | Iterable[Mapping[str, Any]], space: str
) -> list[dict[str, Any]]:
    """Request items from ``{genotype or index: value}`` or from dicts naming genotype/index/label
    and ``value``."""
    out: list[dict[str, Any]] = []
    if isinstance(values, Mapping):
        for key, value in values.items():
            ident = item_body(key, space)
            out.append({**ident, "value": float(value)})
        return out
    for entry in values:
        unknown = set(entry) - {"genotype", "nb201_index", "index", "label", "value"}
        if unknown:
            raise ValueError(f"unknown ground-truth keys {sorted(unknown)}")
        out.append({k: v for k, v in entry.items() if v is not None})
    return out


def _identities(entry: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The ways a ground-truth value or an export row names its architecture."""
    out: list[tuple[str, Any]] = []
    if entry.get("genotype") is not None and isinstance(entry["genotype"], str):
        out.append(("genotype", entry["genotype"]))
    for k in ("nb201_index", "index"):
        if entry.get(k) is not None:
            out.append(("index", int(entry[k])))
    if entry.get("label") is not None:
        out.append(("label", entry["label"]))
    return out


def put_ground_truth_op(
    parts: Sequence[Part], set_name: str, items: list[dict[str, Any]], skip_unknown: bool
) -> Op:
    """PUT the values of one set. With several parts, or ``skip_unknown``, the batch's own rows say
    which part holds each architecture (the server refuses one a batch does not contain); values
    for architectures in no part are skipped with ``skip_unknown``, else sent so the server names them."""
    routed: list[list[dict[str, Any]]] = [[] for _ in parts]
    skipped = 0
    if len(parts) == 1 and not skip_unknown:
        routed[0] = items
    else:
        exports: list[Export] = yield from export_op(parts)
        where: dict[tuple[str, Any], set[int]] = {}
        for n, export in enumerate(exports):
            for row in export.rows:
                ident = {"genotype": row.genotype, "index": row.index, "label": row.label}
                for key in _identities(ident):
                    where.setdefault(key, set()).add(n)
        for entry in items:
            homes = set().union(*(where.get(k, set()) for k in _identities(entry)))
            if homes:
                for n in sorted(homes):
                    routed[n].append(entry)
            elif skip_unknown:
                skipped += 1
            else:
                routed[0].append(entry)
    stored = []
    for part, chunk in zip(parts, routed, strict=True):
        if chunk:
            answer = yield Call(
                "PUT", f"/v1/batches/{part.batch_id}/ground_truth/{set_name}", json={"items": chunk}
            )
            stored.append(GroundTruthStored.model_validate(answer))
    return GroundTruthPut(
        set_name=set_name,
        created=sum(s.created for s in stored),
        updated=sum(s.updated for s in stored),
        unchanged=sum(s.unchanged for s in stored),
        skipped=skipped,
        parts=stored,
    )
