"""API keys, scopes, owners and the loopback rule, against the session's Postgres (one test on the
embedded SQLite default)."""

from __future__ import annotations

import argparse
import logging
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, update

from app.auth import (
    LOCAL_PRINCIPAL,
    Principal,
    Scope,
    owner_for_new_batch,
    owner_scoped_idempotency_key,
    visible_owner_filter,
)
from app.auth.cli import add_keys_commands
from app.auth.keys import create_key, hash_key, load_pepper, revoke_key
from app.auth.models import ApiKey
from app.auth.problems import ProblemError
from app.db import get_sessionmaker, make_engine
from app.models import Batch, utcnow
from tests.auth_helpers import auth_settings, bearer, client_for, guarded_app, new_key
from tests.test_api_batches import batch_body

LOOPBACK = "http://127.0.0.1:8000"


def assert_problem(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert set(body) == {"type", "title", "status", "detail", "code", "errors"}
    assert body["status"] == status and body["code"] == code and body["errors"] == []
    assert body["detail"] and "Traceback" not in body["detail"]
    return body


@pytest.fixture
def required():  # type: ignore[no-untyped-def]
    settings = auth_settings(auth="required")
    with client_for(guarded_app(settings)) as c:
        yield settings, c


def test_missing_key_is_401_with_bearer_challenge(required) -> None:  # type: ignore[no-untyped-def]
    _, c = required
    for resp in (c.get("/v1/whoami"), c.post("/v1/batches", json=batch_body(seed=900))):
        body = assert_problem(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert "keys create" in body["detail"]
    # a non-Bearer Authorization header is no key either
    assert_problem(c.get("/v1/whoami", headers={"Authorization": "Basic YTpi"}), 401, "unauthorized")


def test_invalid_keys_are_401_and_indistinguishable(required) -> None:  # type: ignore[no-untyped-def]
    settings, c = required
    key = new_key(settings)
    wrong_secret = key.secret[:-4] + ("AAAA" if not key.secret.endswith("AAAA") else "BBBB")
    details = set()
    for presented in (wrong_secret, "far_00000000_" + "x" * 43, "garbage", key.prefix, key.secret + "x"):
        body = assert_problem(c.get("/v1/whoami", headers=bearer(presented)), 401, "unauthorized")
        details.add(body["detail"])
    # unknown prefix and wrong secret answer the same: prefixes cannot be probed
    assert len(details) == 1
    assert c.get("/v1/whoami", headers=bearer(key)).status_code == 200


def test_expired_and_revoked_keys_are_401(required) -> None:  # type: ignore[no-untyped-def]
    settings, c = required
    expiring = new_key(settings, expires_in=timedelta(hours=1))
    revoked = new_key(settings)
    assert c.get("/v1/whoami", headers=bearer(expiring)).status_code == 200
    assert c.get("/v1/whoami", headers=bearer(revoked)).status_code == 200
    with get_sessionmaker().begin() as s:
        s.execute(
            update(ApiKey)
            .where(ApiKey.prefix == expiring.prefix)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        assert revoke_key(s, revoked.prefix) is True
        assert revoke_key(s, revoked.prefix) is False  # twice is harmless
    assert (
        "expired"
        in assert_problem(c.get("/v1/whoami", headers=bearer(expiring)), 401, "unauthorized")["detail"]
    )
    assert (
        "revoked"
        in assert_problem(c.get("/v1/whoami", headers=bearer(revoked)), 401, "unauthorized")["detail"]
    )


def test_scopes_follow_the_http_method(required) -> None:  # type: ignore[no-untyped-def]
    settings, c = required
    reader = new_key(settings, scopes=(Scope.READ,))
    submitter = new_key(settings, scopes=(Scope.SUBMIT,))
    admin = new_key(settings, scopes=(Scope.ADMIN,))
    body = assert_problem(
        c.post("/v1/batches", json=batch_body(seed=901), headers=bearer(reader)), 403, "forbidden"
    )
    assert "'submit'" in body["detail"]
    assert c.get("/v1/spaces", headers=bearer(reader)).status_code == 200
    assert_problem(c.get("/v1/spaces", headers=bearer(submitter)), 403, "forbidden")
    assert c.post("/v1/probe/submit", headers=bearer(submitter)).status_code == 200
    # a cross-batch report is a POST that only reads: read scope passes the guard (then 422 on the body)
    assert c.post("/v1/reports", json={}, headers=bearer(reader)).status_code == 422
    # admin implies read and submit
    assert c.get("/v1/spaces", headers=bearer(admin)).status_code == 200
    created = c.post("/v1/batches", json=batch_body(seed=902), headers=bearer(admin))
    assert created.status_code == 201, created.text


def test_x_api_key_header_and_principal(required) -> None:  # type: ignore[no-untyped-def]
    settings, c = required
    key = new_key(settings, owner="bo", scopes=(Scope.READ,))
    who = c.get("/v1/whoami", headers={"X-API-Key": key.secret})
    assert who.status_code == 200
    assert who.json() == {"owner": "bo", "scopes": ["read"], "key_id": key.id}


def test_last_used_at_is_written_at_most_once_per_window(required) -> None:  # type: ignore[no-untyped-def]
    settings, c = required
    key = new_key(settings)

    def last_used():  # type: ignore[no-untyped-def]
        with get_sessionmaker().begin() as s:
            return s.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key.id))

    assert last_used() is None
    c.get("/v1/whoami", headers=bearer(key))
    first = last_used()
    assert first is not None and abs((utcnow() - first).total_seconds()) < 60
    c.get("/v1/whoami", headers=bearer(key))
    assert last_used() == first  # inside the 60 s window: no write
    with client_for(guarded_app(auth_settings(auth="required", auth_last_used_resolution_s=0))) as eager:
        eager.get("/v1/whoami", headers=bearer(key))
    assert last_used() > first


def test_secret_is_stored_only_as_a_peppered_hmac(required) -> None:  # type: ignore[no-untyped-def]
    settings, c = required
    key = new_key(settings)
    assert c.get("/v1/whoami", headers=bearer(key)).status_code == 200
    assert key.secret.startswith(key.prefix + "_") and len(key.prefix) == 12
    with get_sessionmaker().begin() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.id == key.id)).one()
        stored = [str(getattr(row, col.key)) for col in inspect(ApiKey).columns]
    assert row.prefix == key.prefix
    assert row.secret_hash == hash_key(load_pepper(settings), key.secret)
    assert len(row.secret_hash) == 64 and all(ch in "0123456789abcdef" for ch in row.secret_hash)
    secret_part = key.secret[len(key.prefix) + 1 :]
    assert not any(secret_part in value for value in stored)
    # without the server pepper the stored hash cannot be recomputed from a guess
    assert hash_key(b"another-pepper-of-at-least-32-characters", key.secret) != row.secret_hash
    other = auth_settings(auth="required", auth_secret="p" * 40)
    with client_for(guarded_app(other)) as c2:
        assert_problem(c2.get("/v1/whoami", headers=bearer(key)), 401, "unauthorized")


def test_generated_pepper_file_is_private_and_stable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = auth_settings(data_dir=tmp_path)
    first = load_pepper(settings)
    path = tmp_path / "auth_secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_pepper(settings) == first and len(first) >= 32
    assert [p.name for p in tmp_path.iterdir()] == ["auth_secret"]  # no temp file left behind
    with pytest.raises(ValueError, match="at least 32"):
        load_pepper(auth_settings(auth_secret="short"))


def test_loopback_auto_needs_no_key_and_required_refuses() -> None:
    auto = auth_settings(auth="auto", host="127.0.0.1")
    with client_for(guarded_app(auto), base_url=LOOPBACK) as c:
        who = c.get("/v1/whoami")
        assert who.status_code == 200
        assert who.json()["owner"] == "local" and who.json()["scopes"] == ["admin", "read", "submit"]
        # a presented key is still checked on loopback
        assert_problem(c.get("/v1/whoami", headers=bearer("far_00000000_nope")), 401, "unauthorized")
    # same settings, a request that did not arrive on a loopback socket
    with client_for(guarded_app(auto), base_url="http://10.1.2.3:8000") as c:
        assert_problem(c.get("/v1/whoami"), 401, "unauthorized")
    # bound to every interface: even local requests need a key
    with client_for(guarded_app(auth_settings(auth="auto", host="0.0.0.0")), base_url=LOOPBACK) as c:
        assert_problem(c.get("/v1/whoami"), 401, "unauthorized")
    with client_for(guarded_app(auth_settings(auth="required")), base_url=LOOPBACK) as c:
        assert_problem(c.get("/v1/whoami"), 401, "unauthorized")
    with client_for(guarded_app(auth_settings(auth="off")), base_url="http://10.1.2.3:8000") as c:
        assert c.get("/v1/whoami").json()["owner"] == "local"


def test_openapi_declares_the_security_schemes(required) -> None:  # type: ignore[no-untyped-def]
    _, c = required
    spec = c.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "far_<prefix>_<secret>",
        "description": "An API key from `fastarchrank keys create`.",
    }
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    security = spec["paths"]["/v1/batches"]["post"]["security"]
    assert {"HTTPBearer": []} in security and {"APIKeyHeader": []} in security


def test_another_owners_batch_is_404_like_a_missing_one(required) -> None:  # type: ignore[no-untyped-def]
    settings, c = required
    ana, bo = new_key(settings, owner="ana"), new_key(settings, owner="bo")
    admin = new_key(settings, owner="lab", scopes=(Scope.ADMIN,))
    with get_sessionmaker().begin() as s:
        s.add(
            Batch(
                id="authbatch0001",
                owner="ana",
                space="nb201",
                dataset="x",
                seed=1,
                options={},
                request_hash="h",
            )
        )
    assert c.get("/v1/probe/batches/authbatch0001", headers=bearer(ana)).json()["owner"] == "ana"
    assert c.get("/v1/probe/batches/authbatch0001", headers=bearer(admin)).status_code == 200
    foreign = c.get("/v1/probe/batches/authbatch0001", headers=bearer(bo))
    missing = c.get("/v1/probe/batches/authbatch0002", headers=bearer(bo))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.text.replace("authbatch0001", "ID") == missing.text.replace("authbatch0002", "ID")


def test_owner_for_new_batch() -> None:
    ana = Principal(owner="ana", scopes=frozenset({Scope.SUBMIT}), key_id=1)
    assert owner_for_new_batch(ana) == "ana"
    assert owner_for_new_batch(ana, "ana") == "ana"
    with pytest.raises(ProblemError) as exc:
        owner_for_new_batch(ana, "bo")
    assert exc.value.status == 403 and exc.value.detail.startswith("owner:")
    assert owner_for_new_batch(LOCAL_PRINCIPAL) == "local"
    assert owner_for_new_batch(LOCAL_PRINCIPAL, "student-3") == "student-3"  # admin may name the owner


def test_visible_owner_filter_and_idempotency_scope(db_session) -> None:  # type: ignore[no-untyped-def]
    db_session.add_all(
        Batch(id=f"vis{o}", owner=o, space="nb201", dataset="x", seed=1, options={}, request_hash="h")
        for o in ("ana", "bo")
    )
    db_session.flush()
    ana = Principal(owner="ana", scopes=frozenset({Scope.READ}), key_id=1)
    ids = select(Batch.id).where(Batch.id.in_(["visana", "visbo"]))
    assert set(db_session.scalars(ids.where(visible_owner_filter(ana)))) == {"visana"}
    assert set(db_session.scalars(ids.where(visible_owner_filter(LOCAL_PRINCIPAL)))) == {"visana", "visbo"}
    # the same client key from two owners is two records; the stored form always fits the column
    assert owner_scoped_idempotency_key("ana", "k1") != owner_scoped_idempotency_key("bo", "k1")
    assert len(owner_scoped_idempotency_key("ana", "k" * 500)) == 64


def _keys_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fastarchrank")
    add_keys_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_keys_cli_round_trip_never_shows_the_secret_again(capsys, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    settings = auth_settings(auth="required")
    assert (
        _keys_cli(
            [
                "keys",
                "create",
                "--owner",
                "cli-owner",
                "--name",
                "laptop",
                "--scope",
                "read",
                "--expires-in",
                "30d",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    secret = out.out.strip()
    assert secret.startswith("far_") and "\n" not in secret  # stdout holds the key alone
    prefix = secret[:12]
    assert prefix in out.err and secret not in out.err and "shown only this once" in out.err

    with client_for(guarded_app(settings)) as c:
        who = c.get("/v1/whoami", headers=bearer(secret))
        assert who.status_code == 200 and who.json()["owner"] == "cli-owner"
        assert _keys_cli(["keys", "list", "--owner", "cli-owner"]) == 0
        listing = capsys.readouterr().out
        assert prefix in listing and "laptop" in listing and "read" in listing
        assert _keys_cli(["keys", "list", "--json"]) == 0
        listing += capsys.readouterr().out
        assert secret not in listing and secret[13:] not in listing
        assert _keys_cli(["keys", "revoke", prefix]) == 0
        assert "revoked" in capsys.readouterr().err
        assert_problem(c.get("/v1/whoami", headers=bearer(secret)), 401, "unauthorized")
    assert _keys_cli(["keys", "revoke", prefix]) == 0
    assert "already revoked" in capsys.readouterr().err
    assert _keys_cli(["keys", "revoke", "far_ffffffff"]) == 1
    assert _keys_cli(["keys", "revoke", "not-a-prefix"]) == 2
    assert _keys_cli(["keys", "create", "--owner", "x", "--expires-in", "soon"]) == 2
    assert "invalid duration" in capsys.readouterr().err
    assert secret not in caplog.text and secret[13:] not in caplog.text


def test_keys_list_refuses_to_invent_an_empty_embedded_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `keys` reads the database this host's settings name, not FASTARCHRANK_URL: a wrong data dir
    # must say so, not answer "no keys" from a database it has just created.
    from app.settings import get_settings

    missing = tmp_path / "elsewhere" / "fastarchrank.db"
    monkeypatch.setenv("FASTARCHRANK_DATABASE_URL", f"sqlite:///{missing}")
    get_settings.cache_clear()
    try:
        assert _keys_cli(["keys", "list"]) == 2
        assert _keys_cli(["keys", "revoke", "far_ffffffff"]) == 2
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert f"no service database at {missing}" in err and "FASTARCHRANK_DATA_DIR" in err
    assert not missing.exists() and not missing.parent.exists()


def test_migration_matches_the_model_on_postgres(database: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.models import Base

    engine = make_engine(database)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert inspect(conn).has_table("api_keys")
    engine.dispose()
    assert [d for d in diffs if "api_keys" in repr(d)] == []


def test_embedded_sqlite_default_upgrade_downgrade_and_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from sqlalchemy.orm import sessionmaker

    from app.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'fastarchrank.db'}"
    upgrade(url)
    engine = make_engine(url)
    assert inspect(engine).has_table("api_keys")
    command.downgrade(alembic_config(url), "0001")
    assert not inspect(engine).has_table("api_keys")
    upgrade(url)
    assert inspect(engine).has_table("api_keys")

    settings = auth_settings(auth="required", data_dir=tmp_path, database_url=url, broker_url=None)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    key = new_key(settings, owner="solo", sessions=sessions, expires_in=timedelta(days=1))
    with client_for(guarded_app(settings, sessions)) as c:
        assert c.get("/v1/whoami", headers=bearer(key)).json()["owner"] == "solo"
        with sessions.begin() as s:
            row = s.scalars(select(ApiKey)).one()
            assert row.last_used_at is not None  # naive on SQLite, still compared correctly
            assert revoke_key(s, key.prefix) is True
        assert_problem(c.get("/v1/whoami", headers=bearer(key)), 401, "unauthorized")
        with sessions.begin() as s:
            expired = create_key(s, load_pepper(settings), "solo", expires_in=timedelta(seconds=1))
            s.execute(
                update(ApiKey)
                .where(ApiKey.id == expired.id)
                .values(expires_at=utcnow() - timedelta(minutes=1))
            )
        assert (
            "expired"
            in assert_problem(c.get("/v1/whoami", headers=bearer(expired)), 401, "unauthorized")["detail"]
        )
    engine.dispose()


def _non_loopback_ip() -> str | None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else str(ip)


def test_loopback_rule_on_a_real_socket() -> None:
    """uvicorn bound to every interface with the default settings: a request over 127.0.0.1 is the
    local owner, one over the machine's LAN address needs a key."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    app = guarded_app(auth_settings(auth="auto", host="127.0.0.1"))
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        local = httpx.get(f"http://127.0.0.1:{port}/v1/whoami", timeout=10)
        assert local.status_code == 200 and local.json()["owner"] == "local"
        lan = _non_loopback_ip()
        if lan is not None:
            remote = httpx.get(f"http://{lan}:{port}/v1/whoami", timeout=10)
            assert remote.status_code == 401 and remote.headers["www-authenticate"].startswith("Bearer")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
