"""Client behaviour that needs no service: both error shapes parsed into one exception, 503 retried
after Retry-After, 4xx never retried, item and ground-truth bodies, non-finite scores, NB201 cells."""

from __future__ import annotations

import json
import random

import httpx
import pytest
from fastarchrank import Client, FastArchRankError
from fastarchrank._ops import ground_truth_items, item_body, part_key, score_of
from fastarchrank._transport import RetryPolicy, retry_after_s
from fastarchrank.models import ExportRow
from fastarchrank.nb201 import EDGES, OPS, genotype, mutate, operations, random_genotype


def _client(handler) -> Client:  # type: ignore[no-untyped-def]
    return Client("http://svc", transport=httpx.MockTransport(handler), retry=RetryPolicy(backoff_s=0.0))


def _error_of(handler) -> FastArchRankError:  # type: ignore[no-untyped-def]
    with _client(handler) as c, pytest.raises(FastArchRankError) as err:
        c.health()
    return err.value


def test_problem_details_and_legacy_bodies_become_the_same_exception() -> None:
    problem = {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "1 invalid field",
        "code": "validation_error",
        "errors": [{"loc": ["body", "items", 0, "genotype"], "msg": "bad cell", "type": "value_error"}],
    }
    legacy = {"detail": [{"loc": ["body", "items", 0, "genotype"], "msg": "bad cell", "type": "value_error"}]}
    for body, media in ((problem, "application/problem+json"), (legacy, "application/json")):
        error = _error_of(lambda r, b=body, m=media: httpx.Response(422, json=b, headers={"content-type": m}))
        assert error.status == 422 and error.code == "validation_error"
        assert error.fields == ["body.items.0.genotype"] and error.errors[0].msg == "bad cell"

    error = _error_of(lambda r: httpx.Response(404, json={"detail": "batch x not found"}))
    assert (error.status, error.code, error.detail) == (404, "not_found", "batch x not found")
    error = _error_of(lambda r: httpx.Response(500, text="boom"))
    assert error.code == "internal_error" and "boom" in error.detail


def test_503_is_retried_after_retry_after_and_4xx_never() -> None:
    calls: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "0"})
        return httpx.Response(200, json={"status": "ok"})

    with _client(flaky) as c:
        assert c.health().status == "ok"
    assert len(calls) == 3

    calls.clear()

    def conflict(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(
            409, json={"title": "Conflict", "status": 409, "code": "conflict", "detail": "x"}
        )

    with _client(conflict) as c, pytest.raises(FastArchRankError) as err:
        c.health()
    assert err.value.code == "conflict" and len(calls) == 1

    assert retry_after_s(httpx.Response(503, headers={"Retry-After": "7"})) == 7.0
    assert RetryPolicy(max_backoff_s=5).delay(0, httpx.Response(503, headers={"Retry-After": "60"})) == 5
    assert RetryPolicy(backoff_s=0.5).delay(2) == 2.0


def test_items_and_ground_truth_bodies() -> None:
    assert item_body("|a~0|", "nb201") == {"genotype": "|a~0|"}
    assert item_body(7, "nb201") == {"nb201_index": 7}
    assert item_body(7, "nats_sss") == {"index": 7}
    assert item_body({"nb201_index": 3, "label": "x", "ground_truth": None}, "nb201") == {
        "nb201_index": 3,
        "label": "x",
    }
    with pytest.raises(ValueError, match="unknown item keys"):
        item_body({"nb201": 3}, "nb201")
    with pytest.raises(TypeError):
        item_body(True, "nb201")
    assert ground_truth_items({5: 91.5, "|x~0|": 40}, "nb201") == [
        {"nb201_index": 5, "value": 91.5},
        {"genotype": "|x~0|", "value": 40.0},
    ]
    assert part_key("k", 0, 1) == "k" and part_key("k", 1, 3) == "k.p2of3"
    assert len(part_key("k" * 128, 2, 3)) <= 128


def _row(**kw: object) -> ExportRow:
    base = {"item_position": 2, "method": "m", "evaluation_id": 1, "genotype": "g", "architecture_key": "g"}
    return ExportRow.model_validate({**base, **kw})


def test_scores_are_none_with_a_reason_for_non_finite_unmet_and_pending() -> None:
    nan = score_of(_row(status="done", score=None, score_kind="nan", finite=False))
    assert nan.score is None and nan.reason == "non-finite score (nan)"
    unmet = score_of(_row(status="unmet", score=None, reason="threshold 0.6 not reached in 10 epochs"))
    assert unmet.score is None and "threshold" in (unmet.reason or "")
    queued = score_of(_row(status="queued"), offset=10)
    assert queued.reason == "queued" and queued.position == 12
    ok = score_of(_row(status="done", score=3.5, finite=True))
    assert ok.score == 3.5 and ok.reason is None


def test_nb201_cells_round_trip_and_mutation_changes_one_edge() -> None:
    ops = ["nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "none"]
    cell = genotype(ops)
    assert cell == "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    assert operations(cell) == ops
    rng = random.Random(0)
    for _ in range(50):
        parent = random_genotype(rng)
        child = mutate(parent, rng)
        diff = [a != b for a, b in zip(operations(parent), operations(child), strict=True)]
        assert sum(diff) == 1
    assert len(EDGES) == 6 and len(OPS) == 5
    with pytest.raises(ValueError):
        genotype(["conv"] * 6)


def test_item_limit_comes_from_the_schema_when_health_does_not_say() -> None:
    posts: list[tuple[str, int]] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health":
            return httpx.Response(401, json={"title": "Unauthorized", "status": 401, "code": "unauthorized"})
        if request.url.path == "/openapi.json":
            schema = {"BatchCreate": {"properties": {"items": {"maxItems": 2}}}}
            return httpx.Response(200, json={"components": {"schemas": schema}})
        body = json.loads(request.content)
        posts.append((request.headers["idempotency-key"], len(body["items"])))
        n = len(posts)
        return httpx.Response(
            201,
            json={
                "batch_id": f"b{n}",
                "evaluations": {"new": 1, "reused": 0},
                "items": 1,
                "architectures": 1,
            },
        )

    with _client(server) as c:
        batch = c.submit("nb201", "synthetic_cifar10", "params", [1, 2, 3, 4, 5], idempotency_key="k")
    assert batch.ids == ["b1", "b2", "b3"]
    assert posts == [("k.p1of3", 2), ("k.p2of3", 2), ("k.p3of3", 1)]
    assert [p.offset for p in batch.parts] == [0, 2, 4]


def test_progress_is_a_log_line_off_a_terminal(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io
    import logging

    # As in a program that has not set up logging for INFO.
    monkeypatch.setattr(logging.getLogger("fastarchrank.client"), "level", logging.WARNING)

    from fastarchrank.models import BatchStatus
    from fastarchrank.progress import Progress

    status = BatchStatus.model_validate(
        {
            "batch_id": "b1",
            "status": "running",
            "space": "nb201",
            "dataset": "d",
            "counts": {"done": 3, "queued": 1},
            "eta_s": 75.0,
        }
    )
    stream = io.StringIO()
    bar = Progress(stream=stream, log_every_s=3600)
    bar.update([status], 12.0)
    bar.update([status], 13.0)  # within log_every_s: no second line
    bar.close()
    (line,) = stream.getvalue().splitlines()
    assert "3/4 evaluations" in line and "ETA 1m15s" in line and "elapsed 12s" in line


def test_url_and_key_come_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    transport = httpx.MockTransport(handler)
    monkeypatch.setenv("FASTARCHRANK_URL", "http://lab-box:8000/")
    monkeypatch.setenv("FASTARCHRANK_API_KEY", "far_12345678_secret")
    with Client(transport=transport) as c:
        c.health()
    assert str(seen[-1].url).startswith("http://lab-box:8000/v1/health")
    assert seen[-1].headers["Authorization"] == "Bearer far_12345678_secret"
    with Client("http://other:9000", api_key="", transport=transport) as c:
        c.health()  # explicit arguments win; "" means no key at all
    assert str(seen[-1].url).startswith("http://other:9000/") and "Authorization" not in seen[-1].headers
    monkeypatch.delenv("FASTARCHRANK_URL")
    monkeypatch.delenv("FASTARCHRANK_API_KEY")
    with Client(transport=transport) as c:
        c.health()
    assert str(seen[-1].url).startswith("http://127.0.0.1:8000/") and "Authorization" not in seen[-1].headers
