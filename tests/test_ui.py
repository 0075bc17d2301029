"""The dashboard and the API docs in a real headless Chromium (Playwright), against `fastarchrank serve`
(embedded: SQLite, filesystem broker, its own real worker) holding a finished and a running batch.

Screenshots go to $FASTARCHRANK_TEST_UI_SCREENSHOTS (bench/results/ui/ for the README), else a temp dir.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse, urlsplit

import httpx
import pytest

from tests.conftest import REPO_ROOT, wait_for

sync_api = pytest.importorskip("playwright.sync_api")

NB201_ITEMS = [
    {"nb201_index": 1462, "label": "all-3x3", "ground_truth": 93.5},
    {"nb201_index": 100, "label": "c100", "ground_truth": 88.1},
    {"nb201_index": 2000, "label": "c2000", "ground_truth": 90.2},
    {"nb201_index": 3000, "label": "c3000", "ground_truth": 85.0},
    {"nb201_index": 4000, "label": "c4000", "ground_truth": 91.7},
    {"nb201_index": 5000, "label": "c5000", "ground_truth": 89.9},
]


def _chromium() -> str | None:
    """Debian's Chromium (installed by .ci/run) or FASTARCHRANK_TEST_CHROMIUM; None: Playwright's own."""
    for candidate in (os.environ.get("FASTARCHRANK_TEST_CHROMIUM"), "/usr/lib/chromium/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


UI_PAGE_SIZE = 400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="fastarchrank-ui-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTARCHRANK_")}
    env.update(
        {
            "FASTARCHRANK_DATA_DIR": str(data_dir),
            "FASTARCHRANK_SWEEP_INTERVAL_S": "1",
            "FASTARCHRANK_TORCH_THREADS": "1",
            "FASTARCHRANK_HEARTBEAT_INTERVAL_S": "0.2",
            # Below the API's 1000, so the dashboard must read a 1000-row ranking in several pages.
            "FASTARCHRANK_MAX_PAGE_SIZE": str(UI_PAGE_SIZE),
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    log = (data_dir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy():  # type: ignore[no-untyped-def]
        try:
            r = httpx.get(f"{base}/v1/health", timeout=2)
            return r.status_code == 200 and r.json()["workers"]["recent"] >= 1
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, timeout=120, what="the embedded service and its worker")
        yield base
    finally:
        os.kill(proc.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=_chromium(), headless=True)
        except sync_api.Error as exc:
            if os.environ.get("FASTARCHRANK_TEST_REQUIRE_BROWSER"):
                raise
            pytest.skip(f"no Chromium to drive ({exc}); .ci/run installs Debian's chromium")
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("FASTARCHRANK_TEST_UI_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _offline_context(browser, blocked: list[str]):  # type: ignore[no-untyped-def]
    """A browser context that can reach this machine only: every other request is aborted and noted."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})

    def route(r):  # type: ignore[no-untyped-def]
        host = urlparse(r.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            blocked.append(f"{r.request.resource_type} {r.request.url}")
            r.abort()

    context.route("**/*", route)
    return context


def _post(base: str, methods: list[dict], label: str, items: list[dict] | None = None) -> str:  # type: ignore[type-arg]
    if items is None:
        items = [{**i, "label": f"{label}-{i['label']}"} for i in NB201_ITEMS]
    body = {
        "space": "nb201",
        "dataset": "synthetic_cifar10",
        "owner": "ui-test",
        "methods": methods,
        "items": items,
    }
    r = httpx.post(f"{base}/v1/batches", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return str(r.json()["batch_id"])


# FEAR at smoke-test size, with a threshold one epoch reaches: a real two-stage run that finishes soon.
QUICK_FEAR = {"name": "fear", "preset": "tiny", "config": {"threshold": 0.01, "stage2_epochs": 2}}


def _done_sum(page) -> int:  # type: ignore[no-untyped-def]
    cells = page.locator("#per-method td.c-done").all_inner_texts()
    return sum(int(c) for c in cells)


@pytest.mark.e2e
def test_dashboard_end_to_end(service: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]
    base = service
    finished = _post(base, [{"name": "params"}, {"name": "flops"}], "fin")
    wait_for(
        lambda: httpx.get(f"{base}/v1/batches/{finished}", timeout=10).json()["status"] == "done",
        timeout=60,
        what="the cheap batch",
    )
    # Still running while the browser looks: a real FEAR run on one architecture, and behind it in
    # the queue params for 40 new architectures, which the worker finishes one by one.
    fear = _post(base, [QUICK_FEAR], "fear", [{"nb201_index": 1462, "label": "fear-all-3x3"}])
    running = _post(
        base, [{"name": "params"}], "run", [{"nb201_index": 6000 + i, "label": f"x{i}"} for i in range(40)]
    )

    blocked: list[str] = []
    context = _offline_context(browser, blocked)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # --- the running batch: counts move while the page polls, without a reload
    page.goto(f"{base}/ui/batches/{running}")
    sync_api.expect(page.locator("#per-method tbody tr")).to_have_count(1)
    before = _done_sum(page)
    assert before < 40
    page.wait_for_function(
        "n => [...document.querySelectorAll('#per-method td.c-done')].reduce((a, c) => a + Number(c.textContent), 0) > n",
        arg=before,
        timeout=180_000,
    )
    assert _done_sum(page) > before
    page.screenshot(path=str(shots / "batch-running.png"), full_page=True)

    # --- batches list: newest first, with owner, methods and counts; filter by status
    page.goto(f"{base}/ui")
    rows = page.locator("#batches tbody tr")
    sync_api.expect(rows).to_have_count(3)
    assert [rows.nth(i).get_attribute("data-batch") for i in range(3)] == [running, fear, finished]
    sync_api.expect(rows.nth(2)).to_contain_text("12 done")
    sync_api.expect(rows.nth(2)).to_contain_text("params, flops")
    sync_api.expect(rows.nth(0)).to_contain_text("ui-test")
    # The page was drawn before this read, so while the API still says running the page must too; on
    # a fast machine the 40 params may already be done, and then the page may show either state.
    now = httpx.get(f"{base}/v1/batches/{running}", timeout=10).json()["status"]
    status_cell = rows.nth(0).locator("td").last
    sync_api.expect(status_cell).to_have_text("running" if now == "running" else re.compile("running|done"))
    page.screenshot(path=str(shots / "batches.png"), full_page=True)
    page.fill("input[name=label]", "FIN-c1")
    page.click("#filters button[type=submit]")
    sync_api.expect(rows).to_have_count(1)
    sync_api.expect(rows.first).to_have_attribute("data-batch", finished)
    page.fill("input[name=label]", "")
    page.select_option("select[name=status]", "done")
    page.click("#filters button[type=submit]")
    sync_api.expect(page.locator(f'#batches tr[data-batch="{finished}"]')).to_have_count(1)
    sync_api.expect(rows.locator(".st-running")).to_have_count(0)

    # --- the finished batch's ranking: 6 rows with NB201 cells drawn, sortable by any column
    page.goto(f"{base}/ui/batches/{finished}")
    ranking = page.locator("#ranking tbody tr")
    sync_api.expect(ranking).to_have_count(6)
    assert page.locator("#ranking tbody svg.cell").count() == 6
    assert page.locator("#ranking tbody svg.cell").first.is_visible()
    assert page.locator("#ranking tbody svg.cell").first.locator("path").count() == 6
    ranks = [float(t) for t in page.locator("#ranking tbody tr td:nth-child(1)").all_inner_texts()]
    assert ranks == sorted(ranks)
    page.click("#ranking th[data-key=label] button")
    sync_api.expect(page.locator("#ranking th[data-key=label]")).to_have_attribute("aria-sort", "ascending")
    labels = page.locator("#ranking tbody tr td:nth-child(2)").all_inner_texts()
    assert labels == sorted(labels) and labels[0] == "fin-all-3x3"
    page.click("#ranking th[data-key=label] button")
    labels_desc = page.locator("#ranking tbody tr td:nth-child(2)").all_inner_texts()
    assert labels_desc == sorted(labels, reverse=True)
    page.click("#ranking th[data-key=score] button")
    scores = [float(t) for t in page.locator("#ranking tbody tr td:nth-child(5)").all_inner_texts()]
    assert scores == sorted(scores)
    page.screenshot(path=str(shots / "ranking.png"), full_page=True)

    # --- the report: correlations with intervals, the top-% table, the heatmap and a plot
    page.goto(f"{base}/ui/batches/{finished}/report")
    sync_api.expect(page.locator("#correlations tbody tr")).to_have_count(2)
    rho = page.locator("#correlations tbody tr").first.locator("td").first.inner_text()
    assert re.fullmatch(r"-?\d\.\d{3}", rho), rho
    top = page.locator("#top-percent tbody tr")
    sync_api.expect(top.first).to_be_visible()
    assert top.count() >= 2 and "%" in top.first.inner_text()
    sync_api.expect(page.locator("#matrix tbody td[style*=background]")).to_have_count(4)
    page.wait_for_function(
        "() => ['plot-scores', 'plot-cost'].every(id => { const i = document.getElementById(id); "
        "return !i.hidden && i.complete && i.naturalWidth > 0; })",
        timeout=60_000,
    )
    page.screenshot(path=str(shots / "report.png"), full_page=True)

    # --- follow an architecture link from the ranking to its evaluations across batches
    page.goto(f"{base}/ui/batches/{finished}")
    link = page.locator("#ranking tbody tr", has_text="fin-all-3x3").locator("a.geno")
    link.click()
    page.wait_for_url(re.compile(r"/ui/architectures/"))
    sync_api.expect(page.locator("#arch-meta")).to_contain_text("1462")
    sync_api.expect(page.locator("#cell svg.cell")).to_be_visible()
    # params and flops of the finished batch and FEAR of the last one
    sync_api.expect(page.locator("#evaluations tbody tr")).to_have_count(3)

    # FEAR's stage-1 curve (and stage 2 when it reached the threshold) once that evaluation is stored
    def fear_stored() -> bool:
        arch = httpx.get(f"{base}/v1/architectures/1462", timeout=10).json()
        return any(
            e["method"] == "fear" and e["status"] not in ("queued", "running") for e in arch["evaluations"]
        )

    wait_for(fear_stored, timeout=240, what="FEAR on the architecture")
    page.reload()
    curve = page.locator("figure.curve")
    sync_api.expect(curve.locator("polyline.series-stage1")).to_have_count(1)
    sync_api.expect(curve.locator("polyline.series-stage2")).to_have_count(1)
    page.screenshot(path=str(shots / "architecture.png"), full_page=True)

    assert not errors, errors
    assert not blocked, blocked
    context.close()


@pytest.mark.e2e
def test_docs_render_with_no_network(service: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]
    blocked: list[str] = []
    context = _offline_context(browser, blocked)
    page = context.new_page()
    page.goto(f"{service}/docs")
    ops = page.locator(".opblock")
    sync_api.expect(ops.first).to_be_visible(timeout=30_000)
    assert ops.count() >= 10
    sync_api.expect(
        page.locator(".opblock-summary-path", has_text=re.compile(r"^/v1/batches$")).first
    ).to_be_visible()
    page.screenshot(path=str(shots / "docs.png"))
    assert not blocked, blocked
    page.goto(f"{service}/redoc")
    sync_api.expect(page.get_by_text("List batches, newest first").first).to_be_attached(timeout=30_000)
    # ReDoc's own footer logo points at its CDN; that image is all it misses offline.
    assert all(b.startswith("image ") for b in blocked), blocked
    context.close()


def _fake_batch(batch_id: str, n: int) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """A DARTS batch of n rows with genotypes over 200 characters, as the JSON API would send it."""
    op = "sep_conv_3x3"
    genotype = (
        f"Genotype(normal=[('{op}', 0), ('{op}', 1), ('{op}', 0), ('{op}', 1), ('{op}', 1), ('skip_connect', 0), "
        "('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
    )
    assert len(genotype) > 200
    status = {
        "batch_id": batch_id,
        "status": "done",
        "space": "darts",
        "dataset": "cifar10",
        "seed": 0,
        "options": {},
        "created_at": "2026-01-01T00:00:00Z",
        "counts": {"queued": 0, "running": 0, "done": n, "failed": 0, "unmet": 0, "rejected": 0, "lost": 0},
        "methods": [{"alias": "synflow", "name": "synflow", "preset": None, "config_hash": "x"}],
        "per_method": {"synflow": {"done": n}},
        "progress": [],
        "timings": {},
        "eta_s": None,
    }
    items = [
        {
            "rank": i + 1,
            "position": i,
            "label": f"cand-{i:04d}",
            "genotype": genotype + f"#{i}",
            "index": None,
            "score": float(n - i),
            "score_repr": None,
            "finite": True,
            "status": "done",
            "reason": None,
            "cost_s": 0.5,
            "evaluation_id": i,
            "architecture_key": f"k{i}",
            "degenerate": False,
        }
        for i in range(n)
    ]
    return status, {
        "batch_id": batch_id,
        "method": "synflow",
        "higher_is_better": True,
        "items": items,
        "total": n,
        "limit": 1000,
        "offset": 0,
    }


@pytest.mark.e2e
def test_ranking_layout_holds_1000_rows_and_long_genotypes(service: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]
    """Front-end only: the page is served by the real service, its JSON is a 1000-row DARTS ranking."""
    import json

    status, ranking = _fake_batch("layout", 1000)
    for width in (1280, 1920):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        # a key pasted into the header field travels as a Bearer token on every API call
        page.add_init_script("sessionStorage.setItem('fastarchrank.apiKey', 'far_test_key')")
        seen_auth: list[str | None] = []

        # One parameter: Playwright passes (route, request) to a handler that takes two. The
        # handler only runs within this iteration, so the closure sees this iteration's list.
        def status_route(r):  # type: ignore[no-untyped-def]
            seen_auth.append(r.request.headers.get("authorization"))  # noqa: B023
            r.fulfill(json=status)

        limits: list[int] = []

        def ranking_route(r):  # type: ignore[no-untyped-def]
            # Pages as the API would cut them, so a dashboard that ignored offset or asked for more
            # than the server's max_page_size would show the wrong rows.
            query = parse_qs(urlsplit(r.request.url).query)
            limit, offset = int(query["limit"][0]), int(query.get("offset", ["0"])[0])
            limits.append(limit)  # noqa: B023
            page_body = {**ranking, "items": ranking["items"][offset : offset + limit]}
            r.fulfill(
                body=json.dumps({**page_body, "limit": limit, "offset": offset}),
                content_type="application/json",
            )

        page.route(re.compile(r".*/v1/batches/layout$"), status_route)
        page.route(re.compile(r".*/v1/batches/layout/ranking.*"), ranking_route)
        page.goto(f"{service}/ui/batches/layout")
        rows = page.locator("#ranking tbody tr")
        sync_api.expect(rows).to_have_count(50)
        sync_api.expect(page.locator("#page-info")).to_have_text("page 1 of 20")
        assert limits == [UI_PAGE_SIZE] * 3  # 400 + 400 + 200 rows: every row, in the server's pages
        assert seen_auth and set(seen_auth) == {"Bearer far_test_key"}
        sync_api.expect(page.locator("#apikey")).to_have_value("far_test_key")
        # the page itself never scrolls sideways; a long genotype is cut with an ellipsis and kept whole in its title
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        geno = page.locator("#ranking tbody a.geno").first
        assert (geno.get_attribute("title") or "").startswith("Genotype(normal=")
        assert geno.bounding_box()["width"] < width / 2  # type: ignore[index]
        page.click("#ranking th[data-key=score] button")
        sync_api.expect(rows.first.locator("td").nth(1)).to_have_text("cand-0999")
        page.click("#next")
        sync_api.expect(page.locator("#page-info")).to_have_text("page 2 of 20")
        if width == 1280:
            page.screenshot(path=str(shots / "ranking-1000-darts.png"))
        context.close()


def test_pages_and_docs_reference_only_local_assets(client) -> None:  # type: ignore[no-untyped-def]
    """Without a browser: every page and both docs pages load their scripts and styles from this server."""
    for path in (
        "/ui",
        "/ui/batches/b1",
        "/ui/batches/b1/report",
        "/ui/architectures/1462?space=nb201",
        "/docs",
        "/redoc",
    ):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assets = re.findall(r'(?:src|href)="([^"]+)"', resp.text) + re.findall(r"url: '([^']+)'", resp.text)
        assert assets, path
        for url in assets:
            assert url.startswith("/"), (path, url)
            if url.endswith((".js", ".css")):
                assert client.get(url).status_code == 200, url


def test_cancel_button_only_when_the_endpoint_exists(client) -> None:  # type: ignore[no-untyped-def]
    assert 'id="cancel"' not in client.get("/ui/batches/b1").text
    app = client.app

    @app.post("/v1/batches/{batch_id}/cancel")
    def _cancel(batch_id: str) -> dict:  # type: ignore[type-arg]
        return {}

    assert 'id="cancel"' in client.get("/ui/batches/b1").text
