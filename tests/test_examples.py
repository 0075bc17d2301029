"""The search-loop examples in examples/ run end to end against a real embedded service with a cheap
method (``params``: no data, a fraction of a second per cell) and return the best architecture."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from fastarchrank import Client, fitness

from tests.conftest import REPO_ROOT
from tests.embedded_service import embedded_service

pytestmark = pytest.mark.e2e
EXAMPLES = REPO_ROOT / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def embedded_url() -> Iterator[str]:
    with embedded_service() as url:
        yield url


def test_random_search_finds_the_largest_sampled_cell(embedded_url: str) -> None:
    rs = _load("random_search")
    with Client(embedded_url, poll_s=0.3) as client:
        out = rs.random_search(client, n=8, per_round=4, dataset="synthetic_cifar10", method="params", seed=1)
        assert out.best is not None and out.evaluated == len(set(out_cells(rs, 8, 1)))
        # The best is the maximum of what the search saw (params: more is "better").
        seen = client.evaluator("nb201", "synthetic_cifar10", "params").evaluate(out_cells(rs, 8, 1))
    assert out.best.score == max(r.score for r in seen if r.score is not None)
    assert out.total_cost_s > 0


def out_cells(rs: ModuleType, n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [rs.random_genotype(rng) for _ in range(n)]


def test_regularized_evolution_improves_on_its_first_population(embedded_url: str) -> None:
    evo = _load("regularized_evolution")
    with Client(embedded_url, poll_s=0.3) as client:
        out = evo.regularized_evolution(
            client,
            population_size=6,
            sample_size=3,
            cycles=8,
            children_per_round=2,
            dataset="synthetic_cifar10",
            method="params",
            seed=0,
        )
    assert out.best is not None and len(out.history) == 6 + 8
    first = max(f for f in (fitness(r) for r in out.history[:6]) if f is not None)
    best = fitness(out.best)
    assert best is not None and best >= first
    assert out.total_cost_s > 0 and out.best.canonical.count("~") == 6


def test_random_search_script_prints_best_and_cost(embedded_url: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "random_search.py"),
            "--url",
            embedded_url,
            "--n",
            "4",
            "--per-round",
            "4",
            "--method",
            "params",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "best architecture: |" in proc.stdout and "total evaluation cost" in proc.stdout


def test_optuna_ask_tell_example(embedded_url: str) -> None:
    pytest.importorskip("optuna")
    opt = _load("optuna_search")
    with Client(embedded_url, poll_s=0.3) as client:
        cell, value, cost = opt.optuna_search(
            client, trials=6, per_round=3, dataset="synthetic_cifar10", method="params"
        )
    assert cell is not None and value is not None and cost > 0


def test_every_example_is_documented() -> None:
    guide = (REPO_ROOT / "docs" / "client.md").read_text()
    shipped = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert shipped == ["optuna_search.py", "random_search.py", "regularized_evolution.py"]
    for name in shipped:
        assert f"examples/{name}" in guide, f"docs/client.md does not describe examples/{name}"
