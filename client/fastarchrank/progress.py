"""Progress of a batch while ``wait`` polls it: one redrawn line on a terminal, a log line every
``log_every_s`` otherwise (so CI logs and nohup files stay readable) — through the
``fastarchrank.client`` logger when the program has set up logging, else on the stream."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from fastarchrank.models import BatchStatus, StatusCounts

log = logging.getLogger("fastarchrank.client")


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


def combined(statuses: Sequence[BatchStatus]) -> tuple[StatusCounts, float | None, bool]:
    """Counts, ETA and finished-ness of several server batches seen as one. The parts share the
    workers, so their ETAs add up; the ETA is unknown when any unfinished part has none."""
    counts = StatusCounts()
    eta: float | None = 0.0
    for s in statuses:
        counts = counts + s.counts
        if not s.finished:
            eta = None if eta is None or s.eta_s is None else eta + s.eta_s
    return counts, eta, all(s.finished for s in statuses)


def status_line(statuses: Sequence[BatchStatus], elapsed_s: float, width: int = 30) -> str:
    counts, eta, _ = combined(statuses)
    total, finished = counts.total, counts.finished
    filled = int(width * finished / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    running = sorted({str(p.get("method", "?")) for s in statuses for p in s.progress})
    trouble = ", ".join(
        f"{k} {getattr(counts, k)}" for k in ("failed", "lost", "rejected", "unmet") if getattr(counts, k)
    )
    return (
        f"[{bar}] {finished}/{total} evaluations  elapsed {format_duration(elapsed_s)}  "
        f"ETA {format_duration(eta) if eta is not None else '?'}"
        + (f"  running: {', '.join(running)}" if running else "")
        + (f"  ({trouble})" if trouble else "")
    )


class Progress:
    def __init__(self, stream: TextIO | None = None, log_every_s: float = 30.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.log_every_s = log_every_s
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_log = -float("inf")

    def update(self, statuses: Sequence[BatchStatus], elapsed_s: float) -> None:
        line = status_line(statuses, elapsed_s)
        if self.interactive:
            self.stream.write("\r" + line[:160].ljust(160))
            self.stream.flush()
            return
        now = time.monotonic()
        done = all(s.finished for s in statuses)
        if done or now - self._last_log >= self.log_every_s:
            self._last_log = now
            ids = ",".join(s.batch_id for s in statuses)
            if log.hasHandlers() and log.isEnabledFor(logging.INFO):
                log.info("batch %s: %s", ids, line)
            else:  # logging not set up by the program: a plain line, so progress=True still shows
                self.stream.write(f"batch {ids}: {line}\n")
                self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
