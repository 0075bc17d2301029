"""The benchmarks' view of the service, built on the public Python client (``fastarchrank``).

Everything a benchmark learns about results comes through the client a NAS controller would use, so
a run measures the product as users see it. This module only adapts the client to the dict-shaped
records the benchmark summaries are written in.
"""

from __future__ import annotations

from typing import Any

from fastarchrank import Client, FastArchRankError
from fastarchrank.progress import format_duration

__all__ = ["FastArchRankError", "ServiceClient", "ServiceError", "format_duration"]


class ServiceError(RuntimeError):
    """A benchmark cannot run against this service (missing method, preset or dataset files)."""


class ServiceClient:
    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        self.client = Client(url, timeout=timeout_s, poll_s=2.0)
        self.url = self.client.config.url

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_json(self, path: str, **params: Any) -> Any:
        return self.client.get_json(path, **params)

    def get_bytes(self, path: str, **params: Any) -> bytes:
        return self.client.get_bytes(path, **params)

    def get_text(self, path: str, **params: Any) -> str:
        return self.client.get_text(path, **params)

    def health(self) -> dict[str, Any]:
        return self.client.health().model_dump(mode="json")

    def methods(self, space: str, dataset: str) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.client.methods(space, dataset)["items"]}

    def dataset(self, name: str) -> dict[str, Any]:
        for item in self.client.datasets():
            if item["name"] == name:
                return item
        raise ServiceError(f"the service does not know dataset {name!r}")

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        batch = self.client.submit(
            body["space"],
            body["dataset"],
            body["methods"],
            body["items"],
            seed=int(body.get("seed", 0)),
            options=body.get("options"),
            idempotency_key=idempotency_key,
            owner=body.get("owner"),
        )
        created = batch.parts[0].created
        assert created is not None and len(batch.parts) == 1, "benchmark batches stay under the item limit"
        return created.model_dump(mode="json")

    def status(self, batch_id: str) -> dict[str, Any]:
        return self.client.get_json(f"/v1/batches/{batch_id}")  # type: ignore[no-any-return]

    def wait(self, batch_id: str, *, timeout_s: float | None = None, progress: bool = True) -> dict[str, Any]:
        """Poll until nothing of the batch is queued or running; returns the final status."""
        self.client.batch(batch_id).wait(progress=progress, timeout=timeout_s)
        return self.status(batch_id)

    def ranking(self, batch_id: str, method: str) -> list[dict[str, Any]]:
        """Every row of one method's ranking (all pages), best first."""
        return [r.model_dump(mode="json") for r in self.client.batch(batch_id).ranking(method).items]

    def report(self, batch_id: str, ground_truth: str | None = None, fmt: str = "json") -> Any:
        batch = self.client.batch(batch_id)
        if fmt == "markdown":
            return batch.report_markdown(ground_truth)
        return batch.report(ground_truth).model_dump(mode="json")

    def export_json(self, batch_id: str) -> dict[str, Any]:
        return self.client.get_json(f"/v1/batches/{batch_id}/export.json")  # type: ignore[no-any-return]
