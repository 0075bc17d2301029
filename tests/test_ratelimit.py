"""Per-key and per-IP rate limits with `limits`: Redis counters on the full stack, memory on the
embedded default; 429 problem details with Retry-After."""

from __future__ import annotations

import uuid

from limits.storage import MemoryStorage, RedisStorage

from app.auth.principal import Scope
from app.auth.ratelimit import RateLimits, storage_uri
from tests.auth_helpers import auth_settings, bearer, client_for, guarded_app, new_key


def test_429_with_retry_after_after_the_budget() -> None:
    settings = auth_settings(auth="required", rate_limit_per_minute=3, read_rate_limit_per_minute=5)
    app = guarded_app(settings)
    limits = app.state.fastarchrank_auth.rate_limits
    assert isinstance(limits.storage, RedisStorage)  # the broker is Redis in the test session
    key, other = new_key(settings), new_key(settings, owner="bo")
    with client_for(app) as c:
        for _ in range(3):
            assert c.post("/v1/probe/submit", headers=bearer(key)).status_code == 200
        resp = c.post("/v1/probe/submit", headers=bearer(key))
        assert resp.status_code == 429
        assert resp.headers["content-type"].startswith("application/problem+json")
        body = resp.json()
        assert (
            body["code"] == "rate_limited" and body["status"] == 429 and "3 submit requests" in body["detail"]
        )
        retry = int(resp.headers["retry-after"])
        assert 1 <= retry <= 60
        # reads have their own budget, and another key its own counter
        assert c.get("/v1/whoami", headers=bearer(key)).status_code == 200
        assert c.post("/v1/probe/submit", headers=bearer(other)).status_code == 200
        for _ in range(4):
            assert c.get("/v1/whoami", headers=bearer(key)).status_code == 200
        assert c.get("/v1/whoami", headers=bearer(key)).status_code == 429


def test_counters_are_shared_by_api_processes_through_redis() -> None:
    settings = auth_settings(auth="required", rate_limit_per_minute=2)
    key = new_key(settings, scopes=(Scope.SUBMIT,))
    with client_for(guarded_app(settings)) as first, client_for(guarded_app(settings)) as second:
        assert first.post("/v1/probe/submit", headers=bearer(key)).status_code == 200
        assert second.post("/v1/probe/submit", headers=bearer(key)).status_code == 200
        assert first.post("/v1/probe/submit", headers=bearer(key)).status_code == 429
        assert second.post("/v1/probe/submit", headers=bearer(key)).status_code == 429


def test_anonymous_callers_are_limited_per_client_ip() -> None:
    settings = auth_settings(auth="off", rate_limit_per_minute=1)
    app = guarded_app(settings)
    with client_for(app, client=("10.0.0.7", 4000)) as a, client_for(app, client=("10.0.0.8", 4000)) as b:
        assert a.post("/v1/probe/submit").status_code == 200
        assert a.post("/v1/probe/submit").status_code == 429
        assert b.post("/v1/probe/submit").status_code == 200


def test_embedded_default_uses_memory_storage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    embedded = auth_settings(broker_url=None, data_dir=tmp_path, auth="off", rate_limit_per_minute=2)
    assert storage_uri(embedded) == "memory://"
    app = guarded_app(embedded)
    assert isinstance(app.state.fastarchrank_auth.rate_limits.storage, MemoryStorage)
    with client_for(app) as c:
        codes = [c.post("/v1/probe/submit").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_zero_disables_a_budget() -> None:
    limits = RateLimits(auth_settings(rate_limit_per_minute=0, read_rate_limit_per_minute=1))
    assert all(limits.hit("submit", "ip:x").allowed for _ in range(50))
    assert limits.hit("read", "ip:x").allowed and not limits.hit("read", "ip:x").allowed


def test_an_unreachable_limiter_lets_requests_through(caplog) -> None:  # type: ignore[no-untyped-def]
    settings = auth_settings(
        auth="off", rate_limit_per_minute=1, rate_limit_storage_url="redis://127.0.0.1:1/0"
    )
    with client_for(guarded_app(settings)) as c:
        assert [c.post("/v1/probe/submit").status_code for _ in range(2)] == [200, 200]
    assert "rate-limit storage unavailable" in caplog.text


def test_namespaces_keep_deployments_apart() -> None:
    a = RateLimits(auth_settings(rate_limit_per_minute=1, rate_limit_namespace=uuid.uuid4().hex))
    b = RateLimits(auth_settings(rate_limit_per_minute=1, rate_limit_namespace=uuid.uuid4().hex))
    assert a.hit("submit", "key:1").allowed and not a.hit("submit", "key:1").allowed
    assert b.hit("submit", "key:1").allowed
