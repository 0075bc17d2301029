"""A small client of the service's v1 API for benchmarks: submit, wait with a progress bar, fetch.

Everything a benchmark learns about results comes through these calls, so a run measures the
product exactly as a NAS controller would use it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import httpx

FINISHED = ("done", "failed", "unmet", "rejected", "lost")
PENDING = ("queued", "running")


class ServiceError(RuntimeError):
    pass


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def lower_bound_eta(status: dict[str, Any]) -> float | None:
    """Seconds the unfinished evaluations of methods with a known mean cost still need (one worker)."""
    bound = 0.0
    for alias, counts in status.get("per_method", {}).items():
        mean = status.get("timings", {}).get(alias, {}).get("mean_cost_s")
        if mean is not None:
            bound += (int(counts.get("queued", 0)) + int(counts.get("running", 0))) * float(mean)
    return bound or None


class ProgressBar:
    """One line on a terminal (redrawn in place); on a pipe or file one line every ``log_every_s``."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30, log_every_s: float = 30.0) -> None:
        self.stream = stream
        self.width = width
        self.log_every_s = log_every_s
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self._last_log = 0.0

    def update(self, status: dict[str, Any], elapsed_s: float) -> None:
        counts = status["counts"]
        total = sum(int(v) for v in counts.values())
        finished = sum(int(counts.get(k, 0)) for k in FINISHED)
        filled = int(self.width * finished / total) if total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        running = sorted({p.get("method", "?") for p in status.get("progress", [])})
        trouble = ", ".join(f"{k} {counts[k]}" for k in ("failed", "lost") if counts.get(k))
        eta = status.get("eta_s")
        if eta is not None:
            eta_text = format_duration(eta)
        else:
            # The API gives no ETA until every unfinished method has a finished evaluation; what the
            # finished methods still owe is a lower bound (methods differ in cost by 1000x, so a plain
            # rate over evaluations would be wildly off).
            bound = lower_bound_eta(status)
            eta_text = f">={format_duration(bound)}" if bound else "?"
        line = (
            f"[{bar}] {finished}/{total} evaluations  elapsed {format_duration(elapsed_s)}  ETA {eta_text}"
            + (f"  running: {', '.join(running)}" if running else "")
            + (f"  ({trouble})" if trouble else "")
        )
        now = time.monotonic()
        if self.interactive:
            self.stream.write("\r" + line[:160].ljust(160))
            self.stream.flush()
        elif now - self._last_log >= self.log_every_s or status.get("status") == "done":
            self._last_log = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


class ServiceClient:
    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        # A loaded machine can drop a connection: retry transport errors, never HTTP errors.
        for attempt in range(5):
            try:
                resp = self.http.request(method, path, **kwargs)
                break
            except httpx.TransportError:
                if attempt == 4:
                    raise
                time.sleep(1.0 + attempt)
        if resp.status_code not in expect:
            raise ServiceError(f"{method} {path} -> {resp.status_code}: {resp.text[:2000]}")
        return resp

    def get_json(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=params or None).json()

    def get_bytes(self, path: str, **params: Any) -> bytes:
        return self._request("GET", path, params=params or None).content

    def get_text(self, path: str, **params: Any) -> str:
        return self._request("GET", path, params=params or None).text

    def health(self) -> dict[str, Any]:
        return self.get_json("/v1/health")

    def methods(self, space: str, dataset: str) -> dict[str, dict[str, Any]]:
        body = self.get_json("/v1/methods", space=space, dataset=dataset)
        return {m["name"]: m for m in body["items"]}

    def dataset(self, name: str) -> dict[str, Any]:
        body = self.get_json("/v1/datasets")
        items = body["items"] if isinstance(body, dict) else body
        for item in items:
            if item["name"] == name:
                return item
        raise ServiceError(f"the service does not know dataset {name!r}")

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._request("POST", "/v1/batches", expect=(200, 201), json=body, headers=headers).json()

    def status(self, batch_id: str) -> dict[str, Any]:
        return self.get_json(f"/v1/batches/{batch_id}")

    def wait(
        self,
        batch_id: str,
        *,
        timeout_s: float | None = None,
        poll_s: float = 2.0,
        progress: ProgressBar | None = None,
    ) -> dict[str, Any]:
        """Poll until nothing of the batch is queued or running; returns the final status."""
        start = time.monotonic()
        try:
            while True:
                status = self.status(batch_id)
                elapsed = time.monotonic() - start
                if progress is not None:
                    progress.update(status, elapsed)
                if status["status"] == "done":
                    return status
                if timeout_s is not None and elapsed > timeout_s:
                    raise ServiceError(
                        f"batch {batch_id} not finished after {format_duration(elapsed)}: "
                        f"counts {status['counts']}"
                    )
                time.sleep(poll_s)
        finally:
            if progress is not None:
                progress.close()

    def ranking(self, batch_id: str, method: str) -> list[dict[str, Any]]:
        """Every row of one method's ranking (all pages)."""
        rows: list[dict[str, Any]] = []
        while True:
            page = self.get_json(
                f"/v1/batches/{batch_id}/ranking", method=method, limit=1000, offset=len(rows)
            )
            rows.extend(page["items"])
            if not page["items"] or len(rows) >= page["total"]:
                return rows

    def report(self, batch_id: str, ground_truth: str | None = None, fmt: str = "json") -> Any:
        params = {"format": fmt, **({"ground_truth": ground_truth} if ground_truth else {})}
        if fmt == "markdown":
            return self.get_text(f"/v1/batches/{batch_id}/report", **params)
        return self.get_json(f"/v1/batches/{batch_id}/report", **params)

    def export_json(self, batch_id: str) -> dict[str, Any]:
        return self.get_json(f"/v1/batches/{batch_id}/export.json")
