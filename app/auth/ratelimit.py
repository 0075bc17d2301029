"""Per-key request rate limits (per client IP when no key is presented), with the `limits` library.

Counters live in Redis when the broker is Redis, so every API process shares them; on the embedded
default they live in process memory. Submit-scope and read-scope requests have separate budgets.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from app.auth.principal import Principal, Scope
from app.auth.problems import RateLimited
from app.settings import Settings

log = logging.getLogger(__name__)


def storage_uri(settings: Settings) -> str:
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    broker = settings.effective_broker_url
    if broker.startswith(("redis://", "rediss://")):
        return broker
    return "memory://"


def default_namespace(settings: Settings) -> str:
    # One deployment = one database; hashing keeps credentials in the URL out of Redis key names.
    return hashlib.sha256(settings.effective_database_url.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int


class RateLimits:
    """The two per-minute budgets of one API process (shared across processes through Redis)."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.storage = storage or storage_from_string(storage_uri(settings))
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.namespace = settings.rate_limit_namespace or default_namespace(settings)
        self.items: dict[str, RateLimitItem | None] = {
            "submit": _per_minute(settings.rate_limit_per_minute),
            "read": _per_minute(settings.read_rate_limit_per_minute),
        }
        self._last_storage_warning = 0.0

    def hit(self, bucket: str, identity: str) -> Verdict:
        item = self.items[bucket]
        if item is None:
            return Verdict(True, 0)
        ids = ("fastarchrank", self.namespace, bucket, identity)
        try:
            if self.limiter.hit(item, *ids):
                return Verdict(True, 0)
            reset_at = self.limiter.get_window_stats(item, *ids).reset_time
        except Exception as exc:
            # A rate limiter that is down must not take the API down with it: let the request
            # through and say so in the log (at most once a minute).
            now = time.monotonic()
            if now - self._last_storage_warning > 60:
                self._last_storage_warning = now
                log.warning("rate-limit storage unavailable, not limiting: %s", type(exc).__name__)
            return Verdict(True, 0)
        return Verdict(False, max(1, math.ceil(reset_at - time.time())))

    def check(self, bucket: str, identity: str) -> None:
        verdict = self.hit(bucket, identity)
        if not verdict.allowed:
            item = self.items[bucket]
            amount = item.amount if item else 0
            raise RateLimited(
                f"more than {amount} {bucket} requests per minute for this "
                f"{'key' if identity.startswith('key:') else 'client'}; retry after "
                f"{verdict.retry_after_s} s",
                verdict.retry_after_s,
            )


def _per_minute(amount: int) -> RateLimitItem | None:
    return RateLimitItemPerMinute(amount) if amount > 0 else None


def bucket_for(scope: Scope) -> str:
    return "read" if scope is Scope.READ else "submit"


def identity_of(principal: Principal, client_host: str | None) -> str:
    if principal.key_id is not None:
        return f"key:{principal.key_id}"
    return f"ip:{client_host or 'unknown'}"
