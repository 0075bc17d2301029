"""The blocking client: ``Client`` and the ``Batch`` it returns."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from fastarchrank import _ops
from fastarchrank._base import DEFAULT_TIMEOUT_S, ClientConfig, decode, new_key, submission
from fastarchrank._ops import Call, Item, MethodArg, Op, Part
from fastarchrank._transport import RETRYABLE_ERRORS, RetryPolicy, should_retry
from fastarchrank.errors import FastArchRankError, WaitTimeout, unreachable
from fastarchrank.models import (
    BatchCancelled,
    BatchStatus,
    Export,
    GroundTruthPut,
    Health,
    Ranking,
    Report,
    Score,
)
from fastarchrank.progress import Progress, combined, format_duration

if TYPE_CHECKING:
    import pandas

    from fastarchrank.evaluator import Evaluator


class Client:
    """A FastArchRank service at ``url`` (default: ``$FASTARCHRANK_URL``, else the local
    ``http://127.0.0.1:8000``), calling with ``api_key`` (default: ``$FASTARCHRANK_API_KEY``, else
    none). Use as a context manager or call ``close()``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        retry: RetryPolicy | None = None,
        max_items_per_batch: int | None = None,
        poll_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig(url, api_key, timeout, retry, max_items_per_batch, poll_s)
        self.http = httpx.Client(
            base_url=self.config.url, timeout=timeout, headers=self.config.headers(), transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call) -> Any:
        policy = self.config.retry
        for attempt in range(policy.attempts):
            last = attempt == policy.attempts - 1
            try:
                resp = self.http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=call.headers
                )
            except RETRYABLE_ERRORS as exc:
                if last:
                    raise unreachable(call.method, f"{self.config.url}{call.path}", exc) from exc
                time.sleep(policy.delay(attempt))
                continue
            if should_retry(resp) and not last:
                time.sleep(policy.delay(attempt, resp))
                continue
            return decode(call, resp)
        raise AssertionError("unreachable")

    def _run(self, op: Op) -> Any:
        # Errors go back into the operation, so one that can do without an answer may catch them.
        try:
            call = next(op)
            while True:
                try:
                    answer = self._send(call)
                except FastArchRankError as exc:
                    call = op.throw(exc)
                    continue
                call = op.send(answer)
        except StopIteration as stop:
            return stop.value

    # --- service-wide reads -------------------------------------------------------------------
    def health(self) -> Health:
        return Health.model_validate(self._run(_single(Call("GET", "/v1/health"))))

    def methods(self, space: str = "nb201", dataset: str = "cifar10") -> dict[str, Any]:
        """GET /v1/methods: every method with its direction, presets and config schema."""
        params = {"space": space, "dataset": dataset}
        return dict(self._run(_single(Call("GET", "/v1/methods", params=params))))

    def datasets(self) -> list[dict[str, Any]]:
        """GET /v1/datasets: each dataset with whether its files are present for the workers."""
        body = self._run(_single(Call("GET", "/v1/datasets")))
        return list(body["items"] if isinstance(body, dict) else body)

    # Escape hatches for endpoints without a typed method (same retries and errors).
    def get_json(self, path: str, **params: Any) -> Any:
        return self._run(_single(Call("GET", path, params=params or None)))

    def get_text(self, path: str, **params: Any) -> str:
        return str(self._run(_single(Call("GET", path, params=params or None, decode="text"))))

    def get_bytes(self, path: str, **params: Any) -> bytes:
        return bytes(self._run(_single(Call("GET", path, params=params or None, decode="bytes"))))

    def openapi(self) -> dict[str, Any]:
        return dict(self._run(_single(Call("GET", "/openapi.json"))))

    def max_items_per_batch(self) -> int | None:
        if self.config.max_items_per_batch is None:
            self.config.max_items_per_batch = self._run(_ops.limits_op()) or 0
        return self.config.max_items_per_batch or None

    # --- batches ------------------------------------------------------------------------------
    def submit(
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
    ) -> Batch:
        """Queue ``items`` under ``methods``. Over the server's item limit the batch is split into
        parts (each its own server batch and idempotency key); the returned ``Batch`` spans them."""
        body, request_items = submission(space, dataset, methods, items, seed, options, owner)
        key = idempotency_key or new_key()
        parts = self._run(_ops.submit_op(body, request_items, key, self.max_items_per_batch()))
        return Batch(self, parts, space)

    def batch(self, *batch_ids: str, space: str = "") -> Batch:
        """A handle on batches submitted earlier (one id, or the ids of a split batch in order)."""
        if not batch_ids:
            raise ValueError("give at least one batch id")
        statuses = self._run(_ops.status_op([Part(b, 0) for b in batch_ids]))
        parts, offset = [], 0
        for s in statuses:
            parts.append(Part(s.batch_id, offset))
            offset += _items_of(s)
        return Batch(self, parts, space or statuses[0].space)

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
    ) -> Evaluator:
        from fastarchrank.evaluator import Evaluator

        return Evaluator(
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


def _single(call: Call) -> Op:
    answer = yield call
    return answer


def _items_of(status: BatchStatus) -> int:
    per = next(iter(status.per_method.values()), None)
    return per.total if per is not None else status.counts.total


class Batch:
    """One submitted batch (possibly several server batches of a split submission)."""

    def __init__(self, client: Client, parts: Sequence[Part], space: str) -> None:
        self.client = client
        self.parts = list(parts)
        self.space = space

    @property
    def ids(self) -> list[str]:
        return [p.batch_id for p in self.parts]

    @property
    def id(self) -> str:
        """The server batch id (the first part's, for a split batch)."""
        return self.parts[0].batch_id

    def __repr__(self) -> str:
        return f"Batch({', '.join(self.ids)})"

    def status(self) -> list[BatchStatus]:
        """The status of every part (one entry unless the submission was split)."""
        return list(self.client._run(_ops.status_op(self.parts)))

    def done(self) -> bool:
        return combined(self.status())[2]

    def wait(
        self, progress: bool = True, timeout: float | None = None, poll_s: float | None = None
    ) -> list[BatchStatus]:
        """Block until nothing is queued or running. ``progress``: a bar on a terminal, a log line
        (logger ``fastarchrank.client``) otherwise. Raises ``WaitTimeout`` after ``timeout`` s."""
        start = time.monotonic()
        bar = Progress() if progress else None
        poll = poll_s if poll_s is not None else self.client.config.poll_s
        try:
            while True:
                statuses = self.status()
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
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()

    def ranking(self, method: str | None = None) -> Ranking:
        """Every row of ``method``'s ranking (the batch's first method by default), best first."""
        return self.client._run(_ops.ranking_op(self.parts, method))  # type: ignore[no-any-return]

    def scores(self, method: str | None = None) -> list[Score]:
        """One ``Score`` per submitted item, in submission order; ``score`` None with a ``reason``
        for anything unfinished, unmet, rejected, failed or non-finite."""
        return list(self.client._run(_ops.scores_op(self.parts, method)))

    def report(self, ground_truth: str | None = None, methods: Sequence[str] | None = None) -> Report:
        return self.client._run(_ops.report_op(self.parts, ground_truth, methods, False))  # type: ignore[no-any-return]

    def report_markdown(self, ground_truth: str | None = None, methods: Sequence[str] | None = None) -> str:
        return str(self.client._run(_ops.report_op(self.parts, ground_truth, methods, True)))

    def plot(self, name: str, path: str | Path, *, part: int = 0, **params: Any) -> Path:
        """Write the PNG plot ``name`` (``score_vs_ground_truth`` or ``cost_vs_spearman``) to ``path``.
        Plots are per server batch: ``part`` picks one of a split batch."""
        png = self.client._run(_ops.plot_op(self.parts[part], name, params))
        out = Path(path)
        out.write_bytes(png)
        return out

    def put_ground_truth(
        self,
        set_name: str,
        values: Mapping[Any, float] | Iterable[Mapping[str, Any]],
        *,
        skip_unknown: bool = False,
    ) -> GroundTruthPut:
        """Store accuracies under ``set_name``: ``{genotype or index: value}`` or dicts naming
        ``genotype`` / ``nb201_index`` / ``index`` / ``label`` and ``value``. ``skip_unknown``: leave
        out values for architectures this batch does not contain (e.g. a published table of many
        more), instead of the server's 422 naming them."""
        items = _ops.ground_truth_items(values, self.space)
        op = _ops.put_ground_truth_op(self.parts, set_name, items, skip_unknown)
        return self.client._run(op)  # type: ignore[no-any-return]

    def cancel(self) -> list[BatchCancelled]:
        """Stop every part: queued evaluations end ``cancelled``, running ones stop at their next
        heartbeat; evaluations another live batch also uses go on. Cancelling again changes nothing."""
        return list(self.client._run(_ops.cancel_op(self.parts)))

    def delete(self) -> None:
        """Delete every part with its items and ground truth (evaluations no other batch uses go too)."""
        self.client._run(_ops.delete_op(self.parts))

    def export(self) -> list[Export]:
        """Every (item, method) row of every part, as the service stores it (export.json)."""
        return list(self.client._run(_ops.export_op(self.parts)))

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per (item, method), items in submission order."""
        return list(self.client._run(_ops.records_op(self.parts)))

    def to_pandas(self) -> pandas.DataFrame:
        try:
            import pandas
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas needs pandas: pip install 'fastarchrank-client[pandas]'") from exc
        return pandas.DataFrame.from_records(self.to_records())


__all__ = ["Batch", "Client", "FastArchRankError"]
