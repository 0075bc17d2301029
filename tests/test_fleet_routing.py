"""Routing by device class: which queue work goes to, that a CPU worker leaves GPU work alone, that a
pinned batch goes where it is pinned, and the fleet-aware dataset check. Real Celery workers on Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import delete, select

from tests.conftest import DATA_DIR, REPO_ROOT, TEST_ENV, WorkerProcess, wait_for

pytestmark = pytest.mark.e2e


def _clear_caches() -> None:
    from app.db import get_engine, get_sessionmaker
    from app.services.queue import producer_app
    from app.settings import get_settings

    with contextlib.suppress(Exception):
        get_engine().dispose()
    for cached in (get_settings, get_engine, get_sessionmaker, producer_app):
        cached.cache_clear()


@contextlib.contextmanager
def own_queue() -> Iterator[str]:
    """This test's own base queue (in-process API and workers alike), and no stale worker rows: the
    fleet check must only see this test's workers."""
    from app.db import session_scope
    from app.models import WorkerSeen

    # under the session queue name, so the session-end cleanup removes its keys too
    queue = f"{os.environ['FASTARCHRANK_QUEUE']}-fleet-{uuid.uuid4().hex[:8]}"
    old = os.environ.get("FASTARCHRANK_QUEUE")
    os.environ["FASTARCHRANK_QUEUE"] = queue
    _clear_caches()
    with session_scope() as s:
        s.execute(delete(WorkerSeen))
    try:
        yield queue
    finally:
        os.environ["FASTARCHRANK_QUEUE"] = old or TEST_ENV["FASTARCHRANK_QUEUE"]
        _clear_caches()
        r = redis.Redis.from_url(TEST_ENV["FASTARCHRANK_BROKER_URL"])
        r.delete(*(f"{queue}.{c}" for c in ("gpu", "cpu", "any")))


def _client() -> Any:
    from fastapi.testclient import TestClient

    from app.main import create_app

    return TestClient(create_app(), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


def _body(seed: int, methods: list[dict[str, Any]], pin: str | None = None, n: int = 2) -> dict[str, Any]:
    options: dict[str, Any] = {} if pin is None else {"device_class": pin}
    return {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "methods": methods,
        "seed": seed,
        "options": options,
        "items": [{"nb201_index": 3000 + i} for i in range(n)],
    }


def _evaluations(batch_id: str) -> list[Any]:
    from app.db import session_scope
    from app.models import BatchEvaluation, Evaluation

    with session_scope() as s:
        linked = select(BatchEvaluation.evaluation_id).where(BatchEvaluation.batch_id == batch_id)
        rows = s.scalars(select(Evaluation).where(Evaluation.id.in_(linked)).order_by(Evaluation.id)).all()
        s.expunge_all()
        return list(rows)


def _advertised(queue_suffixes: set[str]) -> Any:
    """A predicate: a live worker advertises exactly these consumed queues."""
    from app.db import session_scope
    from app.models import WorkerSeen

    def check() -> bool:
        with session_scope() as s:
            for caps in s.scalars(select(WorkerSeen.capabilities)):
                if caps and {q.rsplit(".", 1)[-1] for q in caps["queues"]} == queue_suffixes:
                    return True
        return False

    return check


def test_default_routes_follow_preset_and_cost() -> None:
    from app.services.fleet import route
    from app.settings import get_settings

    s = get_settings()
    assert route("fear", "training", "paper", None, s) == "gpu"
    assert route("shortreg", "training", "paper-search", None, s) == "gpu"
    assert route("fear", "training", "tiny", None, s) == "any"
    assert route("full", "training", "cpu", None, s) == "any"
    assert route("synflow", "zero_cost", None, None, s) == "any"
    # an unknown preset is priced at the expensive end: a GPU's work
    assert route("full", "training", "my-own", None, s) == "gpu"
    assert route("fear", "training", "paper", "cpu", s) == "cpu"
    assert route("params", "static", None, "gpu", s) == "gpu"
    configured = s.model_copy(update={"gpu_presets": [], "gpu_min_prior_cost_s": 10**9})
    assert route("fear", "training", "paper", None, configured) == "any"


def test_submission_records_the_route_and_every_publish_uses_it() -> None:
    """The sweeper re-publishes from the stored class: same queue as the first publish."""
    from app.services.queue import publish

    with own_queue() as queue, _client() as client:
        r = redis.Redis.from_url(TEST_ENV["FASTARCHRANK_BROKER_URL"])
        resp = client.post(
            "/v1/batches", json=_body(51, [{"name": "fear", "preset": "paper"}, {"name": "params"}])
        )
        assert resp.status_code == 201, resp.text
        evs = _evaluations(resp.json()["batch_id"])
        by_method = {e.method: e.device_class for e in evs}
        assert by_method == {"fear": "gpu", "params": "any"}
        assert r.llen(f"{queue}.gpu") == 2  # one task per training evaluation
        assert r.llen(f"{queue}.any") == 1  # zero-cost/static work of both architectures shares a task
        assert r.llen(f"{queue}.cpu") == 0
        # a mixed payload (the sweeper groups across batches) is split by queue
        out = publish([[e.id for e in evs]])
        assert out.complete and out.tasks == 2
        assert r.llen(f"{queue}.gpu") == 3 and r.llen(f"{queue}.any") == 2
        pinned = client.post("/v1/batches", json=_body(52, [{"name": "fear", "preset": "paper"}], pin="cpu"))
        assert pinned.status_code == 201, pinned.text
        assert {e.device_class for e in _evaluations(pinned.json()["batch_id"])} == {"cpu"}
        assert r.llen(f"{queue}.cpu") == 2


def test_cpu_worker_leaves_gpu_work_and_a_pinned_batch_goes_where_pinned() -> None:
    with own_queue() as queue, _client() as client:
        cpu = WorkerProcess(env={"FASTARCHRANK_QUEUE": queue}).start()
        gpu_told: subprocess.Popen[bytes] | None = None
        try:
            wait_for(_advertised({"cpu", "any"}), timeout=120, what="the cpu worker's beacon")
            to_gpu = client.post("/v1/batches", json=_body(61, [{"name": "params"}], pin="gpu"))
            assert to_gpu.status_code == 201, to_gpu.text
            assert any("no live worker consumes gpu work" in w for w in to_gpu.json()["warnings"])
            to_cpu = client.post("/v1/batches", json=_body(62, [{"name": "params"}], pin="cpu"))
            assert to_cpu.status_code == 201 and to_cpu.json()["warnings"] == []
            wait_for(
                lambda: all(e.status == "done" for e in _evaluations(to_cpu.json()["batch_id"])),
                timeout=120,
                what="the cpu-pinned batch",
            )
            # The CPU worker was free the whole time; the GPU-class work is still waiting for a GPU worker.
            assert {e.status for e in _evaluations(to_gpu.json()["batch_id"])} == {"queued"}
            r = redis.Redis.from_url(TEST_ENV["FASTARCHRANK_BROKER_URL"])
            assert r.llen(f"{queue}.gpu") == 1

            # A worker told to take GPU work (here on CPU, `--queues gpu`) runs it.
            env = {**os.environ, **TEST_ENV, "FASTARCHRANK_QUEUE": queue}
            log = (DATA_DIR / f"gpu-told-{uuid.uuid4().hex[:6]}.log").open("wb")
            gpu_told = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--device", "cpu", "--queues", "gpu"],
                env=env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            wait_for(
                lambda: all(e.status == "done" for e in _evaluations(to_gpu.json()["batch_id"])),
                timeout=120,
                what="the gpu-pinned batch on the gpu-told worker",
            )
            cpu_done = {e.worker.split("/")[0] for e in _evaluations(to_cpu.json()["batch_id"])}
            gpu_done = {e.worker.split("/")[0] for e in _evaluations(to_gpu.json()["batch_id"])}
            assert cpu_done.isdisjoint(gpu_done), (cpu_done, gpu_done)
            health = client.get("/v1/health").json()
            fleet = health["workers"]["by_device_class"]
            assert f"{queue}.gpu" in fleet["cpu"]["queues"] and f"{queue}.any" in fleet["cpu"]["queues"]
            assert set(health["broker"]["queue_depths"]) == {f"{queue}.{c}" for c in ("gpu", "cpu", "any")}
            item = next(
                w for w in health["workers"]["items"] if w["capabilities"]["queues"] == [f"{queue}.gpu"]
            )
            assert "synthetic_cifar10" in item["capabilities"]["datasets"]
            assert item["capabilities"]["torch"]
        finally:
            cpu.stop()
            if gpu_told is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(gpu_told.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    gpu_told.wait(timeout=30)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(gpu_told.pid, signal.SIGKILL)


def test_dataset_is_checked_against_the_live_workers_of_the_routed_queue() -> None:
    """The workers that would run the work decide, not the API's disk: a live GPU worker without
    CIFAR-10 → 422 naming dataset; one that has it → accepted although the API host has no files."""
    from app.db import session_scope
    from app.models import WorkerSeen, utcnow
    from app.services.fleet import Capabilities

    def advertise(name: str, datasets: list[str]) -> None:
        caps = Capabilities(
            device_class="gpu", device="cuda", queues=[f"{queue}.gpu", f"{queue}.any"], datasets=datasets
        )
        with session_scope() as s:
            s.add(
                WorkerSeen(
                    name=name,
                    device="cuda",
                    queue=queue,
                    last_seen=utcnow(),
                    capabilities=caps.model_dump(mode="json"),
                    info={},
                )
            )

    with own_queue() as queue, _client() as client:
        advertise("gpu-host-a:1", ["synthetic_cifar10"])
        body = {**_body(71, [{"name": "fear", "preset": "paper"}]), "dataset": "cifar10"}
        resp = client.post("/v1/batches", json=body)
        assert resp.status_code == 422, resp.text
        problem = resp.json()
        assert problem["errors"][0]["loc"] == ["body", "dataset"]
        assert "no live worker for gpu work has cifar10 files" in problem["detail"]
        # pinned to CPU: no live CPU worker to ask, so the API's own files decide (none here)
        pinned = client.post("/v1/batches", json={**body, "options": {"device_class": "cpu"}})
        assert pinned.status_code == 422 and "not available" in pinned.json()["detail"]
        advertise("gpu-host-b:1", ["cifar10", "synthetic_cifar10"])
        ok = client.post("/v1/batches", json=body)
        assert ok.status_code == 201, ok.text
        assert ok.json()["warnings"] == []
        with session_scope() as s:
            s.execute(delete(WorkerSeen))


def test_eta_divides_each_routed_part_by_the_workers_of_its_queue() -> None:
    """Paper-scale FEAR goes to the one GPU worker; three CPU workers do not shorten it. The ETA is
    the slowest routed part over that queue's consumers, not all work over every live worker."""
    from app.db import session_scope
    from app.models import WorkerSeen, utcnow
    from app.services.eta import prior_cost_s
    from app.services.fleet import Capabilities

    def advertise(name: str, cls: str) -> None:
        caps = Capabilities(
            device_class=cls,
            device="cuda" if cls == "gpu" else "cpu",
            queues=[f"{queue}.{cls}", f"{queue}.any"],
            datasets=["synthetic_cifar10"],
        )
        with session_scope() as s:
            s.add(
                WorkerSeen(
                    name=name,
                    device=caps.device,
                    queue=queue,
                    last_seen=utcnow(),
                    capabilities=caps.model_dump(mode="json"),
                    info={},
                )
            )

    with own_queue() as queue, _client() as client:
        advertise("gpu-host:1", "gpu")
        for i in range(3):
            advertise(f"cpu-host:{i}", "cpu")
        body = _body(73, [{"name": "fear", "preset": "paper"}, {"name": "params"}], n=2)
        resp = client.post("/v1/batches", json=body)
        assert resp.status_code == 201, resp.text
        status = client.get(f"/v1/batches/{resp.json()['batch_id']}").json()
        assert status["eta_basis"] == "prior"
        # 2 paper-scale FEAR runs on 1 GPU worker; the params part (4 consumers) is far shorter
        assert status["eta_s"] == pytest.approx(2 * prior_cost_s("fear", "training", "paper"))
        with session_scope() as s:
            s.execute(delete(WorkerSeen))


def test_embedded_broker_depth_is_counted_per_routed_queue(tmp_path: Any) -> None:
    from app.services.queue import queue_depths
    from app.settings import Settings

    settings = Settings(data_dir=tmp_path, broker_url=None, queue="ev")
    folder = settings.broker_dir / "queue"
    folder.mkdir(parents=True)
    for i, q in enumerate(["ev.gpu", "ev.gpu", "ev.any", "other.any"]):
        (folder / f"{i}_x.{q}.msg").write_bytes(b"{}")
    assert queue_depths(settings) == {"ev.gpu": 2, "ev.cpu": 0, "ev.any": 1}


def test_worker_queues_option_is_validated() -> None:
    from app.services.fleet import parse_classes

    assert parse_classes("gpu, any,gpu") == ["gpu", "any"]
    with pytest.raises(ValueError, match="unknown device class 'tpu'"):
        parse_classes("cpu,tpu")
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--device", "cpu", "--queues", "tpu"],
        env={**os.environ, **TEST_ENV},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "unknown device class 'tpu'" in out.stderr
