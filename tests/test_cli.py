"""`fastarchrank report` reads the report of a batch from a running API."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from tests.test_api_reports import _batch_with_scores


def test_cli_report_prints_markdown(client, db_session, capsys) -> None:  # type: ignore[no-untyped-def]
    from app.cli import main
    from app.main import create_app

    batch_id = _batch_with_scores(client, db_session, 401, {"synflow": [3.0, 2.0, 1.0]}, [90.0, 80.0, 70.0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert main(["report", batch_id, "--url", f"http://127.0.0.1:{port}"]) == 0
        out = capsys.readouterr().out
        assert "synflow" in out and "|" in out
        assert main(["report", "nope", "--url", f"http://127.0.0.1:{port}"]) == 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)
