"""Retry policy shared by the sync and async clients.

Retried: connection-level failures (the request may not have reached the server) and 503 (the
service says "not now", with a Retry-After). Never retried: any 4xx — the request itself is wrong and
sending it again cannot help. POSTs are safe to retry because every submission carries an
Idempotency-Key, so a replay answers with the first batch instead of creating a second.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        hinted = retry_after_s(response) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_backoff_s)
        return min(self.backoff_s * (2**attempt), self.max_backoff_s)


def retry_after_s(response: httpx.Response) -> float | None:
    """The Retry-After header as seconds (delta-seconds or an HTTP date), None when absent/invalid."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def should_retry(response: httpx.Response) -> bool:
    return response.status_code == 503


RETRYABLE_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)


def monotonic() -> float:
    return time.monotonic()
