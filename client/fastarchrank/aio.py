"""The asyncio client: ``AsyncClient`` / ``AsyncBatch`` / ``AsyncEvaluator``, the same methods as
the blocking ones (awaitable), driving the same operations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from fastarchrank import _ops
from fastarchrank._base import DEFAULT_TIMEOUT_S, ClientConfig, decode, new_key, submission
from fastarchrank._ops import Call, Item, MethodArg, Op, Part
from fastarchrank._transport import RETRYABLE_ERRORS, RetryPolicy, should_retry
from fastarchrank.errors import FastArchRankError, WaitTimeout, unreachable
from fastarchrank.evaluator import SearchSpec, _key
from fastarchrank.models import (
    BatchCancelled,
    BatchStatus,
    Export,
    GroundTruthPut,
    Health,
    Ranking,
    Report,
    Result,
    Score,
)
from fastarchrank.progress import Progress, combined, format_duration


class AsyncClient:
    """The asyncio twin of :class:`fastarchrank.Client`, with the same defaults for ``url`` and
    ``api_key``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        retry: RetryPolicy | None = None,
        max_items_per_batch: int | None = None,
        poll_s: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig(url, api_key, timeout, retry, max_items_per_batch, poll_s)
        self.http = httpx.AsyncClient(
            base_url=self.config.url, timeout=timeout, headers=self.config.headers(), transport=transport
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, call: Call) -> Any:
        policy = self.config.retry
        for attempt in range(policy.attempts):
            last = attempt == policy.attempts - 1
            try:
                resp = await self.http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=call.headers
                )
            except RETRYABLE_ERRORS as exc:
                if last:
                    raise unreachable(call.method, f"{self.config.url}{call.path}", exc) from exc
                await asyncio.sleep(policy.delay(attempt))
                continue
            if should_retry(resp) and not last:
                await asyncio.sleep(policy.delay(attempt, resp))
                continue
            return decode(call, resp)
        raise AssertionError("unreachable")

    async def _run(self, op: Op) -> Any:
        # Errors go back into the operation, so one that can do without an answer may catch them.
        try:
            call = next(op)
            while True:
                try:
                    answer = await self._send(call)
                except FastArchRankError as exc:
                    call = op.throw(exc)
                    continue
                call = op.send(answer)
        except StopIteration as stop:
            return stop.value

    async def health(self) -> Health:
        return Health.model_validate(await self._send(Call("GET", "/v1/health")))

    async def methods(self, space: str = "nb201", dataset: str = "cifar10") -> dict[str, Any]:
        """GET /v1/methods: every method with its direction, presets and config schema."""
        return dict(await self._send(Call("GET", "/v1/methods", params={"space": space, "dataset": dataset})))

    async def openapi(self) -> dict[str, Any]:
        return dict(await self._send(Call("GET", "/openapi.json")))

    async def max_items_per_batch(self) -> int | None:
        if self.config.max_items_per_batch is None:
            self.config.max_items_per_batch = await self._run(_ops.limits_op()) or 0
        return self.config.max_items_per_batch or None

    async def submit(
        self,
        space: str,
        dataset: str,
        methods: Sequence[MethodArg] | MethodArg,
        items: Sequence[Item],
        *,
        seed: int = 0,
        options: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        owner: str | None = None,
    ) -> AsyncBatch:
        body, request_items = submission(space, dataset, methods, items, seed, options, owner)
        key = idempotency_key or new_key()
        limit = await self.max_items_per_batch()
        parts = await self._run(_ops.submit_op(body, request_items, key, limit))
        return AsyncBatch(self, parts, space)

    def evaluator(
        self,
        space: str,
        dataset: str,
        method: str,
        preset: str | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        ratio_to_fastest: float | None = None,
        seed: int = 0,
        search_id: str | None = None,
    ) -> AsyncEvaluator:
        return AsyncEvaluator(
            self,
            space=space,
            dataset=dataset,
            method=method,
            preset=preset,
            config=config,
            ratio_to_fastest=ratio_to_fastest,
            seed=seed,
            search_id=search_id,
        )


class AsyncBatch:
    def __init__(self, client: AsyncClient, parts: Sequence[Part], space: str) -> None:
        self.client = client
        self.parts = list(parts)
        self.space = space

    @property
    def ids(self) -> list[str]:
        return [p.batch_id for p in self.parts]

    @property
    def id(self) -> str:
        return self.parts[0].batch_id

    async def status(self) -> list[BatchStatus]:
        return list(await self.client._run(_ops.status_op(self.parts)))

    async def wait(
        self, progress: bool = True, timeout: float | None = None, poll_s: float | None = None
    ) -> list[BatchStatus]:
        start = time.monotonic()
        bar = Progress() if progress else None
        poll = poll_s if poll_s is not None else self.client.config.poll_s
        try:
            while True:
                statuses = await self.status()
                elapsed = time.monotonic() - start
                if bar is not None:
                    bar.update(statuses, elapsed)
                counts, _, finished = combined(statuses)
                if finished:
                    return statuses
                if timeout is not None and elapsed >= timeout:
                    raise WaitTimeout(
                        status=None,
                        code="timeout",
                        title="batch not finished",
                        detail=f"batch {', '.join(self.ids)} not finished after {format_duration(elapsed)}: "
                        f"{counts.finished}/{counts.total} evaluations finished",
                    )
                await asyncio.sleep(poll)
        finally:
            if bar is not None:
                bar.close()

    async def ranking(self, method: str | None = None) -> Ranking:
        return await self.client._run(_ops.ranking_op(self.parts, method))  # type: ignore[no-any-return]

    async def scores(self, method: str | None = None) -> list[Score]:
        return list(await self.client._run(_ops.scores_op(self.parts, method)))

    async def report(self, ground_truth: str | None = None, methods: Sequence[str] | None = None) -> Report:
        return await self.client._run(_ops.report_op(self.parts, ground_truth, methods, False))  # type: ignore[no-any-return]

    async def report_markdown(
        self, ground_truth: str | None = None, methods: Sequence[str] | None = None
    ) -> str:
        return str(await self.client._run(_ops.report_op(self.parts, ground_truth, methods, True)))

    async def plot(self, name: str, path: str | Path, *, part: int = 0, **params: Any) -> Path:
        png = await self.client._run(_ops.plot_op(self.parts[part], name, params))
        out = Path(path)
        out.write_bytes(png)
        return out

    async def put_ground_truth(
        self,
        set_name: str,
        values: Mapping[Any, float] | Iterable[Mapping[str, Any]],
        *,
        skip_unknown: bool = False,
    ) -> GroundTruthPut:
        items = _ops.ground_truth_items(values, self.space)
        op = _ops.put_ground_truth_op(self.parts, set_name, items, skip_unknown)
        return await self.client._run(op)  # type: ignore[no-any-return]

    async def cancel(self) -> list[BatchCancelled]:
        return list(await self.client._run(_ops.cancel_op(self.parts)))

    async def delete(self) -> None:
        await self.client._run(_ops.delete_op(self.parts))

    async def export(self) -> list[Export]:
        return list(await self.client._run(_ops.export_op(self.parts)))

    async def to_records(self) -> list[dict[str, Any]]:
        return list(await self.client._run(_ops.records_op(self.parts)))


class AsyncEvaluator(SearchSpec):
    def __init__(self, client: AsyncClient, **spec: Any) -> None:
        super().__init__(**spec)
        self.client = client

    async def _submit(self, keys: list[Hashable]) -> AsyncBatch:
        while True:
            try:
                batch = await self.client.submit(
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

    async def as_completed(self, genotypes: Iterable[Item]) -> AsyncIterator[Result]:
        distinct, todo = self.todo(genotypes)
        for key in distinct:
            if key not in todo:
                yield self.cache[key]
        if not todo:
            return
        if self.higher_is_better is None:
            self.direction(await self.client.methods(self.space, self.dataset))
        batch = await self._submit(todo)
        pending = set(range(len(todo)))
        while pending:
            for result in self.finished(todo, await batch.scores(), pending, batch.id):
                yield result
            if pending:
                await asyncio.sleep(self.client.config.poll_s)

    async def evaluate(self, genotypes: Iterable[Item]) -> list[Result]:
        items = list(genotypes)
        async for _ in self.as_completed(items):
            pass
        return [self.cache[_key(i)] for i in items]
