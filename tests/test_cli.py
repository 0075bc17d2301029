"""The command line: `fastarchrank report` and `fastarchrank ground-truth put` against a running API
(URL from --url or the environment, no httpx noise on stderr); the product never imports bench/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tests.conftest import REPO_ROOT
from tests.test_api_reports import _batch_with_scores


@pytest.fixture
def api_url(database: str) -> Iterator[str]:
    from app.main import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_cli_report_prints_markdown(client, db_session, capsys, api_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.cli import main

    batch_id = _batch_with_scores(client, db_session, 401, {"synflow": [3.0, 2.0, 1.0]}, [90.0, 80.0, 70.0])
    assert main(["report", batch_id, "--url", api_url]) == 0
    captured = capsys.readouterr()
    assert "synflow" in captured.out and "|" in captured.out
    assert "HTTP Request" not in captured.err, "httpx's INFO lines must stay off stderr"
    assert main(["report", "nope", "--url", api_url]) == 1
    assert "404" in capsys.readouterr().err

    # Without --url the command finds the service from the environment.
    monkeypatch.setenv("FASTARCHRANK_URL", api_url)
    assert main(["report", batch_id]) == 0
    assert "synflow" in capsys.readouterr().out


def test_service_url_follows_fastarchrank_port(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.cli import service_url
    from app.settings import get_settings

    monkeypatch.delenv("FASTARCHRANK_URL", raising=False)
    monkeypatch.setenv("FASTARCHRANK_PORT", "8765")
    monkeypatch.setenv("FASTARCHRANK_HOST", "0.0.0.0")
    get_settings.cache_clear()
    try:
        assert service_url(None) == "http://127.0.0.1:8765"
        assert service_url("http://elsewhere:1/") == "http://elsewhere:1"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_ground_truth_put_from_csv(client, db_session, capsys, api_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from app.cli import main

    batch_id = _batch_with_scores(client, db_session, 402, {"synflow": [3.0, 2.0, 1.0]}, [90.0, 80.0, 70.0])
    csv_path = tmp_path / "truth.csv"
    csv_path.write_text("nb201_index,genotype,test_acc\n10,,50.0\n11,,60.0\n12,,70.0\n")
    argv = ["ground-truth", "put", batch_id, "--set", "pub", "--csv", str(csv_path), "--url", api_url]
    assert main([*argv, "--value-column", "test_acc"]) == 0
    assert "3 values (3 new" in capsys.readouterr().out
    report = client.get(f"/v1/batches/{batch_id}/report", params={"ground_truth": "pub"}).json()
    assert report["methods"]["synflow"]["spearman"] == pytest.approx(-1.0)
    # Again: idempotent.
    assert main([*argv, "--value-column", "test_acc"]) == 0
    assert "3 unchanged" in capsys.readouterr().out

    by_genotype = tmp_path / "by_genotype.csv"
    arch = client.get(f"/v1/batches/{batch_id}/ranking").json()["items"][0]["genotype"]
    by_genotype.write_text(f"genotype,acc\n{arch},99.5\n")
    assert (
        main(["ground-truth", "put", batch_id, "--set", "g", "--csv", str(by_genotype), "--url", api_url])
        == 0
    )

    bad = tmp_path / "bad.csv"
    bad.write_text("nb201_index,acc\n10,high\n")
    assert main(["ground-truth", "put", batch_id, "--set", "x", "--csv", str(bad), "--url", api_url]) == 2
    assert "bad.csv:2: acc 'high' is not a number" in capsys.readouterr().err
    # A published table covers far more architectures than a batch: those are skipped and counted,
    # unless --strict asks the server to refuse them.
    table = tmp_path / "table.csv"
    table.write_text("nb201_index,acc\n9999,50\n10,51\n")
    put_table = ["ground-truth", "put", batch_id, "--set", "t", "--csv", str(table), "--url", api_url]
    assert main(put_table) == 0
    assert "(1 new, 0 updated, 0 unchanged, 1 not in the batch)" in capsys.readouterr().out
    assert main([*put_table, "--strict"]) == 1
    assert "422" in capsys.readouterr().err
    # ...but a file of which no row is in the batch is a mistake (a typo'd index, another space).
    stray = tmp_path / "stray.csv"
    stray.write_text("nb201_index,acc\n99999,50\n9998,51\n")
    assert main(["ground-truth", "put", batch_id, "--set", "s", "--csv", str(stray), "--url", api_url]) == 1
    assert "no row of the CSV names an architecture of this batch" in capsys.readouterr().err


def test_the_product_does_not_import_or_package_bench() -> None:
    code = (
        "import sys, app.cli, app.main, worker.tasks; "
        "bad = sorted(m for m in sys.modules if m == 'bench' or m.startswith('bench.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(p.startswith("bench") for p in include), include
    from app.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "synthetic/tiny"])


def test_a_bad_setting_names_the_variable_not_a_traceback(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from app.cli import main
    from app.settings import get_settings

    monkeypatch.setenv("FASTARCHRANK_MAX_PAGE_SIZE", "2000")
    get_settings.cache_clear()
    try:
        assert main(["worker", "--ping"]) == 2
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "FASTARCHRANK_MAX_PAGE_SIZE='2000'" in err and "less than or equal to 1000" in err
    assert "Traceback" not in err
