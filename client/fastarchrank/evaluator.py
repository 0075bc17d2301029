"""Evaluators for search loops: hand genotypes in, get scores back, one search across many calls.

Design (see docs/client.md): an evaluator is one *search*. It fixes space, dataset, method, preset,
config and seed, and keeps a cache of what it already evaluated, so a controller that proposes the
same genotype twice pays once. Each ``evaluate`` / ``as_completed`` call submits the uncached
genotypes as one batch. The batches of one search carry the same ``options.search_id`` (generated
once per evaluator) so the server applies FEAR's ratio-to-fastest cap across the whole search, as in
the paper's sequential random search, not per batch. A server that does not know ``search_id`` yet
answers 422 naming the field; the evaluator then carries on without it (the cap is per batch there).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from fastarchrank._ops import Item
from fastarchrank.errors import FastArchRankError
from fastarchrank.models import FINAL_STATUSES, Result, Score

if TYPE_CHECKING:
    from fastarchrank.client import Batch, Client

log = logging.getLogger("fastarchrank.client")


def new_search_id() -> str:
    return f"search-{uuid.uuid4().hex[:20]}"


class SearchSpec:
    """What every batch of one search shares, and the bookkeeping both evaluators need."""

    def __init__(
        self,
        space: str,
        dataset: str,
        method: str,
        preset: str | None,
        config: Mapping[str, Any] | None,
        ratio_to_fastest: float | None,
        seed: int,
        search_id: str | None,
    ) -> None:
        self.space, self.dataset, self.method, self.preset = space, dataset, method, preset
        self.config = dict(config or {})
        self.ratio_to_fastest = ratio_to_fastest
        self.seed = seed
        self.search_id = search_id or new_search_id()
        # Only a capped search needs the server to know which batches belong together.
        self.send_search_id = ratio_to_fastest is not None
        self.cache: dict[Hashable, Result] = {}
        self.higher_is_better: bool | None = None
        self.batch_ids: list[str] = []
        self._costs: dict[int, float] = {}

    def methods(self) -> list[dict[str, Any]]:
        m: dict[str, Any] = {"name": self.method}
        if self.preset:
            m["preset"] = self.preset
        if self.config:
            m["config"] = self.config
        return [m]

    def options(self) -> dict[str, Any] | None:
        if self.ratio_to_fastest is None:
            return None
        opts: dict[str, Any] = {"ratio_to_fastest": self.ratio_to_fastest}
        if self.send_search_id:
            opts["search_id"] = self.search_id
        return opts

    def search_id_refused(self, exc: FastArchRankError) -> bool:
        """True (and stop sending it) when the server rejected ``options.search_id`` as unknown."""
        if self.send_search_id and exc.status == 422 and any("search_id" in f for f in exc.fields):
            log.warning(
                "this server does not accept options.search_id; the ratio-to-fastest cap applies per batch"
            )
            self.send_search_id = False
            return True
        return False

    def todo(self, items: Iterable[Item]) -> tuple[list[Hashable], list[Hashable]]:
        """The distinct items in order, and those of them not evaluated yet."""
        distinct = list(dict.fromkeys(_key(i) for i in items))
        return distinct, [k for k in distinct if k not in self.cache]

    def direction(self, catalogue: Mapping[str, Any]) -> bool:
        """Whether a larger score is better for this search's method, from GET /v1/methods."""
        for m in catalogue.get("items", []):
            if m.get("name") == self.method:
                self.higher_is_better = bool(m.get("higher_is_better", True))
                return self.higher_is_better
        raise ValueError(f"the service has no method {self.method!r}")

    def finished(
        self, todo: list[Hashable], scores: list[Score], pending: set[int], batch_id: str
    ) -> list[Result]:
        """Results for the pending positions whose evaluation is final now."""
        out = []
        for s in scores:
            if s.position in pending and s.status in FINAL_STATUSES:
                pending.discard(s.position)
                out.append(self.result(todo[s.position], s, batch_id))
        return out

    def result(self, key: Hashable, s: Score, batch_id: str) -> Result:
        res = Result(
            genotype=str(key),
            canonical=s.genotype,
            architecture_key=s.architecture_key or s.genotype,
            method=self.method,
            status=s.status,
            score=s.score,
            reason=s.reason,
            cost_s=s.cost_s,
            evaluation_id=s.evaluation_id or 0,
            batch_id=batch_id,
            higher_is_better=self.higher_is_better is not False,
        )
        self.cache[key] = res
        if s.cost_s is not None and s.evaluation_id is not None:
            self._costs[s.evaluation_id] = float(s.cost_s)
        return res

    @property
    def total_cost_s(self) -> float:
        """Evaluation cost of everything this search evaluated (each evaluation counted once)."""
        return sum(self._costs.values())

    @property
    def evaluations(self) -> int:
        return len(self.cache)


def _key(item: Item) -> Hashable:
    if isinstance(item, str | int):
        return item
    raise TypeError("an evaluator takes genotype strings or benchmark indices")


def fitness(result: Result) -> float | None:
    """The score oriented so that larger is better (None when there is no usable score)."""
    if result.score is None:
        return None
    return result.score if result.higher_is_better else -result.score


class Evaluator(SearchSpec):
    """Blocking evaluator; ``client.evaluator(...)`` makes one."""

    def __init__(self, client: Client, **spec: Any) -> None:
        super().__init__(**spec)
        self.client = client

    def _submit(self, keys: list[Hashable]) -> Batch:
        while True:
            try:
                batch = self.client.submit(
                    self.space,
                    self.dataset,
                    self.methods(),
                    keys,  # type: ignore[arg-type]
                    seed=self.seed,
                    options=self.options(),
                )
            except FastArchRankError as exc:
                if self.search_id_refused(exc):
                    continue
                raise
            self.batch_ids.extend(batch.ids)
            return batch

    def as_completed(self, genotypes: Iterable[Item]) -> Iterator[Result]:
        """Yield one result per distinct genotype as soon as it is final (cached ones first)."""
        distinct, todo = self.todo(genotypes)
        for key in distinct:
            if key not in todo:
                yield self.cache[key]
        if not todo:
            return
        if self.higher_is_better is None:
            self.direction(self.client.methods(self.space, self.dataset))
        batch = self._submit(todo)
        pending = set(range(len(todo)))
        while pending:
            yield from self.finished(todo, batch.scores(), pending, batch.id)
            if pending:
                time.sleep(self.client.config.poll_s)

    def evaluate(self, genotypes: Iterable[Item]) -> list[Result]:
        """Results in the order given (duplicates computed once, answered from the cache)."""
        items = list(genotypes)
        for _ in self.as_completed(items):
            pass
        return [self.cache[_key(i)] for i in items]
