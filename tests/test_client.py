"""The Python client against a real embedded service: submit, wait, scores in submission order,
ranking, report, ground truth, plots, split of an over-limit batch, idempotent retry after a dropped
connection, 4xx raised with the field list, async parity, and the search-loop evaluator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastarchrank import AsyncClient, Client, FastArchRankError

from tests.embedded_service import embedded_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def embedded_url() -> Iterator[str]:
    with embedded_service() as url:
        yield url


NB201_EXAMPLE = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)
ALL_CONV3 = 1462  # every edge nor_conv_3x3: the most parameters
ALL_NONE = 1651  # every edge none: the fewest
DATASET = "synthetic_cifar10"


class Recording(httpx.BaseTransport):
    """A real HTTP transport that records each request and can lose the answer of chosen POSTs
    after the server has processed them (what a dropped connection does)."""

    def __init__(self, drop_posts: int = 0) -> None:
        self.inner = httpx.HTTPTransport()
        self.drop_posts = drop_posts
        self.requests: list[httpx.Request] = []
        self.lost: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.inner.handle_request(request)
        if request.method == "POST" and self.drop_posts > 0:
            self.drop_posts -= 1
            response.read()
            self.lost.append(response.json())
            raise httpx.ReadError("connection dropped after the request was sent", request=request)
        return response

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]


def test_submit_wait_scores_ranking_report_and_plot(embedded_url: str, tmp_path: Path) -> None:
    items: list[Any] = [
        {"nb201_index": ALL_NONE, "label": "empty", "ground_truth": 10.0},
        ALL_CONV3,
        {"genotype": NB201_EXAMPLE, "label": "example", "ground_truth": 80.0},
    ]
    with Client(embedded_url, poll_s=0.3) as client:
        batch = client.submit("nb201", DATASET, ["params", "flops"], items, seed=0)
        (status,) = batch.wait(progress=False, timeout=120)
        assert status.finished and status.counts.done == 6

        scores = batch.scores("params")
        assert [s.position for s in scores] == [0, 1, 2]
        assert [s.label for s in scores] == ["empty", None, "example"]
        assert scores[1].score is not None and scores[0].score is not None
        assert scores[1].score > scores[2].score > scores[0].score  # type: ignore[operator]
        assert all(s.status == "done" and s.reason is None for s in scores)

        ranking = batch.ranking("params")
        assert ranking.higher_is_better and ranking.total == 3
        assert ranking.items[0].index == ALL_CONV3 and ranking.items[0].rank == 1.0

        # Ground truth given with the items, and a second set put afterwards (by index and genotype).
        report = batch.report()
        assert set(report.methods) == {"params", "flops"}
        stored = batch.put_ground_truth("published", {ALL_NONE: 10.0, ALL_CONV3: 94.0, NB201_EXAMPLE: 80.0})
        assert stored.created + stored.updated == 3 and stored.skipped == 0
        report = batch.report("published")
        assert report.spearman("params") == pytest.approx(1.0)
        assert "params" in batch.report_markdown("published")

        png = batch.plot("score_vs_ground_truth", tmp_path / "scores.png", ground_truth="published")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(ValueError, match="unknown plot"):
            batch.plot("nope", tmp_path / "x.png")

        records = batch.to_records()
        assert len(records) == 6 and {r["method"] for r in records} == {"params", "flops"}
        assert [r["position"] for r in records] == [0, 0, 1, 1, 2, 2]


def test_over_limit_batch_is_split_into_idempotent_parts(embedded_url: str) -> None:
    with Client(embedded_url) as probe:
        assert (
            probe.max_items_per_batch()
            == probe.openapi()["components"]["schemas"]["BatchCreate"]["properties"]["items"]["maxItems"]
        )
    items = [ALL_NONE, 10, ALL_CONV3, 20, 30]
    with Client(embedded_url, max_items_per_batch=2, poll_s=0.3) as client:
        batch = client.submit("nb201", DATASET, "params", items, idempotency_key="split-test-1")
        assert len(batch.ids) == 3 and len(set(batch.ids)) == 3
        statuses = batch.wait(progress=False, timeout=120)
        assert sum(s.counts.done for s in statuses) == 5
        scores = batch.scores()
        assert [s.position for s in scores] == [0, 1, 2, 3, 4]
        by_index = {r.index: r for r in batch.ranking().items}
        assert by_index[ALL_CONV3].rank == 1.0 and by_index[ALL_NONE].rank == 5.0
        assert [r.position for r in batch.ranking().items] == [1, 2, 3, 4, 5]
        # The same logical submission again (same key) answers with the same parts: no duplicates.
        again = client.submit("nb201", DATASET, "params", items, idempotency_key="split-test-1")
        assert again.ids == batch.ids


def test_submit_retried_after_a_dropped_connection_creates_no_duplicate(embedded_url: str) -> None:
    transport = Recording(drop_posts=1)
    with Client(embedded_url, transport=transport) as client:
        batch = client.submit("nb201", DATASET, ["params"], [ALL_CONV3, 99], seed=3)
    posts = transport.posts()
    assert len(posts) == 2, "the client must retry the POST whose answer was lost"
    keys = {p.headers["idempotency-key"] for p in posts}
    assert len(keys) == 1 and keys != {""}, "both attempts carry the same generated Idempotency-Key"
    (lost,) = transport.lost
    assert batch.id == lost["batch_id"], "the retry answered with the batch the lost answer named"


def test_errors_carry_status_code_and_field_list_and_4xx_is_not_retried(embedded_url: str) -> None:
    transport = Recording()
    with Client(embedded_url, transport=transport) as client:
        with pytest.raises(FastArchRankError) as err:
            client.submit("nb201", DATASET, ["params"], ["|nor_conv_3x3~0|"])
        assert err.value.status == 422 and err.value.code == "validation_error"
        assert "body.items.0.genotype" in err.value.fields
        assert "nodes" in str(err.value)
        assert len(transport.posts()) == 1, "a 4xx must not be retried"

        with pytest.raises(FastArchRankError) as err:
            client.batch("0" * 32)
        assert err.value.status == 404 and err.value.code == "not_found"

        with pytest.raises(FastArchRankError) as err:
            client.submit("nb201", DATASET, [{"name": "no_such_method"}], [1])
        assert err.value.status == 422 and any("methods" in f for f in err.value.fields)


def test_unreachable_service_raises_the_same_exception_type() -> None:
    from fastarchrank._transport import RetryPolicy

    policy = RetryPolicy(attempts=2, backoff_s=0.01)
    with Client("http://127.0.0.1:9", retry=policy) as client, pytest.raises(FastArchRankError) as err:
        client.health()
    assert err.value.status is None and err.value.code == "unreachable"


def test_async_client_gives_the_same_answers(embedded_url: str) -> None:
    items: list[Any] = [ALL_NONE, ALL_CONV3, NB201_EXAMPLE]
    with Client(embedded_url, poll_s=0.3) as client:
        sync_batch = client.submit("nb201", DATASET, ["flops"], items, seed=5)
        sync_batch.wait(progress=False, timeout=120)
        expected = [(s.position, s.score, s.status) for s in sync_batch.scores()]

    async def run() -> tuple[list[tuple[int, float | None, str]], int, list[float | None]]:
        async with AsyncClient(embedded_url, poll_s=0.3) as aclient:
            batch = await aclient.submit("nb201", DATASET, ["flops"], items, seed=5)
            await batch.wait(progress=False, timeout=120)
            got = [(s.position, s.score, s.status) for s in await batch.scores()]
            ranking = await batch.ranking()
            ev = aclient.evaluator("nb201", DATASET, "flops", seed=5)
            results = await ev.evaluate([ALL_CONV3, ALL_NONE, ALL_CONV3])
            return got, ranking.total, [r.score for r in results]

    got, total, ev_scores = asyncio.run(run())
    assert got == expected and total == 3
    assert ev_scores == [expected[1][1], expected[0][1], expected[1][1]]


def test_cancel_and_delete_reach_every_part_of_a_split_batch(embedded_url: str) -> None:
    # shortreg takes seconds per architecture: right after submission nearly all are still queued.
    items = [5001, 5002, 5003, 5004]
    with Client(embedded_url, max_items_per_batch=2, poll_s=0.3) as client:
        batch = client.submit("nb201", DATASET, {"name": "shortreg", "preset": "tiny"}, items, seed=11)
        assert len(batch.ids) == 2
        cancelled = batch.cancel()
        assert [c.batch_id for c in cancelled] == batch.ids
        assert all(c.cancelled_at is not None for c in cancelled)
        assert sum(c.counts.cancelled for c in cancelled) >= 2, "queued evaluations end cancelled"
        assert sum(c.counts.total for c in cancelled) == 4
        again = batch.cancel()
        assert [c.cancelled_at for c in again] == [c.cancelled_at for c in cancelled], "idempotent"

        batch.delete()
        for batch_id in batch.ids:
            with pytest.raises(FastArchRankError) as err:
                client.batch(batch_id).status()
            assert err.value.status == 404

    async def run() -> int | None:
        async with AsyncClient(embedded_url) as aclient:
            abatch = await aclient.submit("nb201", DATASET, ["params"], [5005], seed=11)
            (state,) = await abatch.cancel()
            assert state.batch_id == abatch.id
            await abatch.delete()
            try:
                await abatch.status()
            except FastArchRankError as exc:
                return exc.status
            return None

    assert asyncio.run(run()) == 404


def test_evaluator_keeps_order_computes_duplicates_once_and_is_one_search(embedded_url: str) -> None:
    transport = Recording()
    with Client(embedded_url, poll_s=0.3, transport=transport) as client:
        ev = client.evaluator("nb201", DATASET, "params", ratio_to_fastest=4.0, seed=11)
        genotypes: list[str | int] = [NB201_EXAMPLE, ALL_CONV3, NB201_EXAMPLE, ALL_NONE]
        results = ev.evaluate(genotypes)
        assert [r.genotype for r in results] == [str(g) for g in genotypes]
        assert results[0] == results[2] and all(r.ok for r in results)
        assert results[1].score > results[0].score > results[3].score  # type: ignore[operator]
        submitted = [p for p in transport.posts() if p.url.path == "/v1/batches"]
        bodies = [json.loads(p.content) for p in submitted]
        assert len(bodies[-1]["items"]) == 3, "the duplicate genotype is submitted once"
        assert ev.total_cost_s > 0 and ev.evaluations == 3

        # A second call of the same search: cached answers, nothing resubmitted; new ones as they finish.
        n_posts = len(transport.posts())
        assert ev.evaluate([ALL_NONE])[0] == results[3] and len(transport.posts()) == n_posts
        seen = [r.genotype for r in ev.as_completed([ALL_NONE, 77, 78])]
        assert sorted(seen) == sorted(["1651", "77", "78"])
        # Every batch of the search names the same search id where the server takes one.
        options = [json.loads(p.content)["options"] for p in transport.posts() if p.url.path == "/v1/batches"]
        assert all(o["ratio_to_fastest"] == 4.0 for o in options)
        ids = {o.get("search_id") for o in options if "search_id" in o}
        assert len(ids) <= 1 and (not ids or ids == {ev.search_id})
