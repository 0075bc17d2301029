"""One `fastarchrank serve` (the embedded default: SQLite, filesystem broker, its own worker) on a
fresh data directory, for the tests that drive the service through the Python client."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.embedded import EmbeddedService


@contextlib.contextmanager
def embedded_service() -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="fastarchrank-client-"))
    service = EmbeddedService(
        data_dir, env={"FASTARCHRANK_SWEEP_INTERVAL_S": "1", "FASTARCHRANK_TORCH_THREADS": "1"}
    )
    with service as url:
        yield url
