"""Per-process caches of ranking reads.

Ranking a batch means reading every item's evaluation and placing ties and unranked rows, whatever
page the client asked for: ~100 ms of CPU for 1000 items. Rendered pages are kept by ETag
(:class:`PageCache`), the ETag being derived from the batch's version (app/batch_versions.py), so a
page stays valid until something it shows changes. Once nothing in a (batch, method) is pending, the
full ranked listing is kept too (:class:`RankingCache`, under a fingerprint of the evaluations'
columns), so another page of it is cut without ranking again. Ground truth and per-row details are
attached to the requested page only. Each API process has its own caches; every process reads the
version from the database (:class:`VersionCache` memoises it for a fraction of a second)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.models import PENDING, BatchEvaluation, Evaluation

Fingerprint = tuple[Any, ...]


def fingerprint(session: Session, batch_id: str, method_id: int) -> Fingerprint | None:
    """What identifies the state of a (batch, method)'s evaluations; None while any is pending
    (a live ranking is never cached: it changes with every finished evaluation)."""
    row = session.execute(
        select(
            func.count(),
            func.sum(case((Evaluation.status.in_(PENDING), 1), else_=0)),
            func.sum(Evaluation.attempts),
            func.max(Evaluation.finished_at),
            func.max(Evaluation.id),
            # Scores and statuses too, so even a change written by hand (SQL) is seen.
            func.sum(case((Evaluation.status == "done", 1), else_=0)),
            func.sum(case((Evaluation.finite.is_(True), Evaluation.score), else_=0.0)),
        )
        .join(BatchEvaluation, BatchEvaluation.evaluation_id == Evaluation.id)
        .where(BatchEvaluation.batch_id == batch_id, BatchEvaluation.batch_method_id == method_id)
    ).one()
    count, pending, attempts, finished, last_id, done, score_sum = row
    if not count or pending:
        return None
    return (int(count), int(attempts or 0), finished, int(last_id), int(done or 0), float(score_sum or 0.0))


class RankingCache:
    """LRU of ranked listings bounded by the total number of rows held (``max_rows``; 0 disables).
    Cached listings are shared: callers must copy a row before changing it."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._entries: OrderedDict[tuple[str, int], tuple[Fingerprint, list[dict[str, Any]]]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int], fp: Fingerprint | None) -> list[dict[str, Any]] | None:
        if fp is None or self.max_rows <= 0:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != fp:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: tuple[str, int], fp: Fingerprint | None, listing: list[dict[str, Any]]) -> None:
        if fp is None or len(listing) > self.max_rows:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._rows -= len(old[1])
            self._entries[key] = (fp, listing)
            self._rows += len(listing)
            while self._rows > self.max_rows:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._rows -= len(evicted)


def etag_of(*parts: Any) -> str:
    """A strong ETag (quoted) from the state a response was built from."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()
    return f'"{digest}"'


def matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in candidates or "*" in candidates


class PageCache:
    """LRU of rendered response bodies by ETag, bounded like the listing cache by the rows they hold
    (``max_rows``; 0 disables). A finished ranking page is served from here without touching the rows
    or the response model again."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._entries: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def get(self, etag: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(etag)
            if entry is None:
                return None
            self._entries.move_to_end(etag)
            return entry[1]

    def put(self, etag: str, body: bytes, rows: int) -> None:
        rows = max(1, rows)
        if rows > self.max_rows:
            return
        with self._lock:
            old = self._entries.pop(etag, None)
            if old is not None:
                self._rows -= old[0]
            self._entries[etag] = (rows, body)
            self._rows += rows
            while self._rows > self.max_rows:
                _, (evicted, _) = self._entries.popitem(last=False)
                self._rows -= evicted


class VersionCache:
    """Per-process memo of a batch's (owner, version) for ``ttl_s`` seconds: a cached ranking page is
    then served without any query. Batches whose version this process bumps are forgotten at its
    commit (app/batch_versions.py ``on_bump``), so a client sees its own writes at once; a worker's
    change is seen within ``ttl_s``. 0 disables it."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, str | None, int]] = {}
        self._lock = threading.Lock()

    def get(self, batch_id: str) -> tuple[str | None, int] | None:
        if self.ttl_s <= 0:
            return None
        entry = self._entries.get(batch_id)
        if entry is None or time.monotonic() - entry[0] > self.ttl_s:
            return None
        return entry[1], entry[2]

    def put(self, batch_id: str, owner: str | None, version: int) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:  # expired entries are only dropped here: bound the dict
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] <= self.ttl_s}
            self._entries[batch_id] = (time.monotonic(), owner, version)

    def forget(self, batch_ids: Collection[str]) -> None:
        with self._lock:
            for b in batch_ids:
                self._entries.pop(b, None)
