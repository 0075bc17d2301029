"""Contract between server and client: on the Postgres + Redis stack (the test session's database and
queue, a real worker), every read endpoint's live answer parses with the client's models, and every
field the client models name exists in the server's OpenAPI schema where the server declares a
response model (checked per model; skipped for those the server does not declare yet)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastarchrank import Client, FastArchRankError, models
from pydantic import BaseModel

from tests.conftest import WorkerProcess

pytestmark = pytest.mark.e2e

# Fields the client already reads for statuses/limits the contract announces but a server may lack.
FORWARD_COMPATIBLE = {("StatusCounts", "cancelled"), ("Health", "limits")}


@pytest.fixture
def live_url(database: str) -> Iterator[str]:
    from app.main import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_live_answers_parse_with_the_client_models(live_url: str, worker: WorkerProcess) -> None:
    with Client(live_url, poll_s=0.3) as client:
        assert client.health().database["dialect"] == "postgresql"
        batch = client.submit(
            "nb201",
            "synthetic_cifar10",
            ["params", "flops"],
            [{"nb201_index": 1462, "ground_truth": 94.0}, {"nb201_index": 1651, "ground_truth": 10.0}, 200],
        )
        statuses = batch.wait(progress=False, timeout=180)
        assert statuses[0].counts.done == 6, worker.output()
        assert isinstance(statuses[0], models.BatchStatus)
        ranking = batch.ranking("flops")
        assert isinstance(ranking.items[0], models.RankingItem) and ranking.total == 3
        export = batch.export()[0]
        assert len(export.rows) == 6 and export.aliases == ["params", "flops"]
        scores = batch.scores("params")
        assert [s.position for s in scores] == [0, 1, 2] and all(s.score for s in scores[:2])
        report = batch.report()
        assert set(report.methods) == {"params", "flops"}
        assert report.ground_truth is not None
        stored = batch.put_ground_truth("pub", [{"nb201_index": 200, "value": 50.0}])
        assert stored.parts[0].set_name == "pub" and stored.created == 1
        assert {m["name"] for m in client.methods("nb201", "synthetic_cifar10")["items"]} >= {
            "params",
            "flops",
        }


def test_unfinished_items_score_none_with_their_status_as_reason(live_url: str) -> None:
    # No worker yet: everything stays queued. One starts at the end so nothing is left on the queue.
    with Client(live_url, poll_s=0.3) as client:
        batch = client.submit("nb201", "synthetic_cifar10", ["params"], [3001, 3002], seed=77)
        scores = batch.scores()
        assert [(s.position, s.score, s.status, s.reason) for s in scores] == [
            (0, None, "queued", "queued"),
            (1, None, "queued", "queued"),
        ]
        (status,) = batch.status()
        assert not status.finished and status.counts.queued == 2
        with pytest.raises(FastArchRankError) as err:
            batch.wait(progress=False, timeout=0.5, poll_s=0.1)
        assert err.value.code == "timeout" and "0/2" in str(err.value)
        drain = WorkerProcess().start()
        try:
            batch.wait(progress=False, timeout=180)
        finally:
            drain.stop()
        assert all(s.score is not None and s.reason is None for s in batch.scores())


def _schemas(client: Client) -> dict[str, Any]:
    return dict(client.openapi().get("components", {}).get("schemas", {}))


CLIENT_MODELS: list[type[BaseModel]] = [
    models.BatchCreated,
    models.EvaluationCounts,
    models.BatchStatus,
    models.StatusCounts,
    models.Ranking,
    models.RankingItem,
    models.Export,
    models.ExportRow,
    models.Report,
    models.Health,
    models.GroundTruthStored,
]


def test_client_model_fields_exist_in_the_servers_schema(live_url: str) -> None:
    with Client(live_url) as client:
        schemas = _schemas(client)
    checked = []
    for model in CLIENT_MODELS:
        schema = schemas.get(model.__name__)
        if schema is None or "properties" not in schema:
            continue  # the server declares no response model of this name (yet)
        missing = [
            name
            for name in model.model_fields
            if name not in schema["properties"] and (model.__name__, name) not in FORWARD_COMPATIBLE
        ]
        assert not missing, f"client model {model.__name__} names fields the server lacks: {missing}"
        checked.append(model.__name__)
    # Today's server declares at least these; the list only grows.
    assert {"BatchCreated", "BatchStatus", "Ranking", "RankingItem"} <= set(checked), checked
