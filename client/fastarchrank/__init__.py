"""Python client of the FastArchRank service (torch-free).

    from fastarchrank import Client
    with Client("http://127.0.0.1:8000") as client:
        batch = client.submit("nb201", "synthetic_cifar10", ["params"], [1462, 1651])
        batch.wait()
        print(batch.scores("params"))
"""

from fastarchrank.aio import AsyncBatch, AsyncClient, AsyncEvaluator
from fastarchrank.client import Batch, Client
from fastarchrank.errors import FastArchRankError, FieldError, WaitTimeout
from fastarchrank.evaluator import Evaluator, fitness
from fastarchrank.models import (
    BatchCancelled,
    BatchCreated,
    BatchStatus,
    GroundTruthPut,
    GroundTruthStored,
    Health,
    Ranking,
    RankingItem,
    Report,
    Result,
    Score,
    StatusCounts,
)

__all__ = [
    "AsyncBatch",
    "AsyncClient",
    "AsyncEvaluator",
    "Batch",
    "BatchCancelled",
    "BatchCreated",
    "BatchStatus",
    "Client",
    "Evaluator",
    "FastArchRankError",
    "FieldError",
    "GroundTruthPut",
    "GroundTruthStored",
    "Health",
    "Ranking",
    "RankingItem",
    "Report",
    "Result",
    "Score",
    "StatusCounts",
    "WaitTimeout",
    "fitness",
]
