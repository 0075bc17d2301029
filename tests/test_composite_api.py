"""Composite rankings through the API: ranking, report, plots and export against hand-computed ranks,
bad specs as 422, named composites validated at submission, and a real worker end to end."""

from __future__ import annotations

import csv
import io
import math

import pytest

from tests.test_api_reports import _batch_with_scores

INF = math.inf
NAN = math.nan
# Five architectures a0..a4 (items in this order). None = no score (the evaluation ends "unmet").
SCORES: dict[str, list[float | None]] = {
    "synflow": [5.0, 4.0, INF, 2.0, None],
    "naswot": [1.0, 2.0, 3.0, NAN, 5.0],
    "jacob_cov": [3.0, 3.0, 1.0, 2.0, 4.0],
}
GT = [90.0, 80.0, 70.0, 60.0, 50.0]
SPEC = "composite:synflow+naswot+jacob_cov"

# By hand, rules worst/order (every measure higher-is-better, rank 1 = best, ties averaged):
#   synflow: a2 (+inf) 1, a0 2, a1 3, a3 4, a4 missing → worst = 4 + (1 + 1)/2 = 5
#   naswot: a4 1, a2 2, a1 3, a0 4, a3 NaN → 5
#   jacob_cov: a4 1, a0 & a1 tie at 2.5, a3 4, a2 5
#   means: a0 8.5/3, a1 8.5/3, a2 8/3, a3 13/3, a4 7/3 → ranks a4 1, a2 2, a0 & a1 3.5, a3 5
WORST_MEANS = {"a0": 8.5 / 3, "a1": 8.5 / 3, "a2": 8 / 3, "a3": 13 / 3, "a4": 7 / 3}
WORST_RANKS = {"a4": 1.0, "a2": 2.0, "a0": 3.5, "a1": 3.5, "a3": 5.0}
# exclude: complete cases a0, a1, a2 only. synflow a2 1, a0 2, a1 3; naswot a2 1, a1 2, a0 3;
#   jacob_cov a0 & a1 1.5, a2 3 → means a0 6.5/3, a1 6.5/3, a2 5/3
EXCLUDE_MEANS = {"a0": 6.5 / 3, "a1": 6.5 / 3, "a2": 5 / 3}


def _ranking(client, batch_id: str, **params):  # type: ignore[no-untyped-def]
    resp = client.get(f"/v1/batches/{batch_id}/ranking", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def scored_batch(client, db_session) -> str:  # type: ignore[no-untyped-def]
    return _batch_with_scores(client, db_session, 911, SCORES, GT)


def test_composite_ranking_matches_hand_computed_ranks(client, scored_batch: str) -> None:  # type: ignore[no-untyped-def]
    ranking = _ranking(client, scored_batch, method=SPEC)
    assert ranking["method"] == SPEC and ranking["higher_is_better"] is False
    assert ranking["partial"] is False and ranking["total"] == 5
    by_label = {i["label"]: i for i in ranking["items"]}
    for label, mean in WORST_MEANS.items():
        assert by_label[label]["score"] == pytest.approx(mean)
        assert by_label[label]["rank"] == WORST_RANKS[label]
        assert by_label[label]["evaluation_id"] is None
        assert by_label[label]["cost_s"] == pytest.approx(6.0)  # three measures at 2 s each
    assert [i["label"] for i in ranking["items"]][:2] == ["a4", "a2"]
    assert by_label["a4"]["info"]["imputed"] == ["synflow"]
    assert by_label["a3"]["info"]["imputed"] == ["naswot"]
    assert by_label["a0"]["info"]["measure_ranks"] == {"synflow": 2.0, "naswot": 4.0, "jacob_cov": 2.5}
    assert ranking["composite"]["measures"] == ["synflow", "naswot", "jacob_cov"]


def test_composite_rules_from_query(client, scored_batch: str) -> None:  # type: ignore[no-untyped-def]
    excluded = _ranking(client, scored_batch, method=SPEC, composite_missing="exclude")
    by_label = {i["label"]: i for i in excluded["items"]}
    for label, mean in EXCLUDE_MEANS.items():
        assert by_label[label]["score"] == pytest.approx(mean)
    assert by_label["a2"]["rank"] == 1.0 and by_label["a0"]["rank"] == 2.5
    assert by_label["a3"]["rank"] is None and "naswot" in by_label["a3"]["reason"]
    assert by_label["a4"]["rank"] is None and "synflow" in by_label["a4"]["reason"]
    assert [i["label"] for i in excluded["items"]][3:] == ["a3", "a4"]  # unranked listed after ranked
    # +inf unusable: synflow a0 1, a1 2, a3 3, a2 & a4 missing at 3 + (2 + 1)/2 = 4.5;
    #   with jacob_cov (a4 1, a0 & a1 2.5, a3 4, a2 5): a0 1.75, a1 2.25, a2 4.75, a3 3.5, a4 2.75
    unusable = _ranking(client, scored_batch, method="composite:synflow+jacob_cov", composite_inf="unusable")
    scores = {i["label"]: i["score"] for i in unusable["items"]}
    assert scores == {"a0": 1.75, "a1": 2.25, "a2": 4.75, "a3": 3.5, "a4": 2.75}
    # one measure alone: an architecture with no usable value in it has nothing to be ranked by
    alone = _ranking(client, scored_batch, method="composite:synflow", composite_inf="unusable")
    by_label = {i["label"]: i for i in alone["items"]}
    assert by_label["a2"]["rank"] is None and "no usable score" in by_label["a2"]["reason"]
    assert by_label["a0"]["rank"] == 1.0 and by_label["a3"]["rank"] == 3.0


def test_unescaped_plus_in_the_query_string_works(client, scored_batch: str) -> None:  # type: ignore[no-untyped-def]
    # a literal "+" in a URL's query decodes to a space; the spec still parses
    resp = client.get(f"/v1/batches/{scored_batch}/ranking?method={SPEC}")
    assert resp.status_code == 200, resp.text
    assert {i["label"]: i["rank"] for i in resp.json()["items"]} == WORST_RANKS


def test_bad_spec_is_422_naming_the_measure_and_aliases(client, scored_batch: str) -> None:  # type: ignore[no-untyped-def]
    before = client.get(f"/v1/batches/{scored_batch}").json()["counts"]
    resp = client.get(f"/v1/batches/{scored_batch}/ranking", params={"method": "composite:synflow+zen"})
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["errors"][0]["loc"] == ["query", "method"]
    msg = problem["errors"][0]["msg"]
    assert "'zen'" in msg and "jacob_cov" in msg and "naswot" in msg and "synflow" in msg
    for bad in ("composite:", "composite:synflow++naswot", "composite:synflow+synflow"):
        resp = client.get(f"/v1/batches/{scored_batch}/ranking", params={"method": bad})
        assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["query", "method"], bad
    resp = client.get(
        f"/v1/batches/{scored_batch}/ranking", params={"method": SPEC, "composite_missing": "drop"}
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["query", "composite_missing"]
    assert client.get(f"/v1/batches/{scored_batch}").json()["counts"] == before


def test_composite_in_report_matrix_plots_and_export(client, scored_batch: str) -> None:  # type: ignore[no-untyped-def]
    report = client.get(
        f"/v1/batches/{scored_batch}/report", params={"method": ["synflow", SPEC], "bootstrap": 0}
    )
    assert report.status_code == 200, report.text
    body = report.json()
    comp = body["methods"][SPEC]
    assert comp["higher_is_better"] is False and comp["n_used"] == 5
    # ρ of the (negated) mean ranks against the ground truth, by hand: composite order a4 a2 {a0 a1} a3
    from scipy.stats import spearmanr

    keys = ["a0", "a1", "a2", "a3", "a4"]
    expected = spearmanr(GT, [-WORST_MEANS[k] for k in keys]).statistic
    assert comp["spearman"] == pytest.approx(expected)
    assert SPEC in body["matrix"] and "synflow" in body["matrix"][SPEC]
    assert body["costs"][SPEC]["mean_s"] == pytest.approx(6.0)
    for plot in ("score_vs_ground_truth.png", "cost_vs_spearman.png"):
        png = client.get(f"/v1/batches/{scored_batch}/plots/{plot}", params={"method": [SPEC]})
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG", plot
    exported = client.get(f"/v1/batches/{scored_batch}/export.json", params={"composite": [SPEC]}).json()
    rows = [r for r in exported["rows"] if r["method"] == SPEC]
    assert len(rows) == 5 and all(r["method_name"] == "composite" for r in rows)
    assert {r["label"]: r["score"] for r in rows} == pytest.approx(WORST_MEANS)
    text = client.get(f"/v1/batches/{scored_batch}/export.csv", params={"composite": [SPEC]}).text
    csv_rows = [r for r in csv.DictReader(io.StringIO(text)) if r["method"] == SPEC]
    assert len(csv_rows) == 5 and all(r["evaluation_id"] == "" for r in csv_rows)


def test_named_composite_is_validated_and_usable(client, db_session) -> None:  # type: ignore[no-untyped-def]
    items = [{"nb201_index": i} for i in (3, 4)]
    methods = [{"name": "params"}, {"name": "flops"}]
    bad = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": methods,
            "items": items,
            "options": {"composites": {"pf": "composite:params+synflow"}},
        },
    )
    assert bad.status_code == 422, bad.text
    error = bad.json()["errors"][0]
    assert error["loc"] == ["body", "options", "composites", "pf"] and "'synflow'" in error["msg"]
    shadow = client.post(
        "/v1/batches",
        json={
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": methods,
            "items": items,
            "options": {"composites": {"params": "composite:params+flops"}},
        },
    )
    assert shadow.status_code == 422 and "already a method alias" in shadow.json()["errors"][0]["msg"]

    batch_id = _batch_with_scores(
        client, db_session, 912, {"params": [1.0, 2.0], "flops": [2.0, 1.0]}, [1, 2]
    )
    # no named composite in that batch: the unknown name lists what there is
    resp = client.get(f"/v1/batches/{batch_id}/ranking", params={"method": "pf"})
    assert resp.status_code == 422 and "params" in resp.json()["errors"][0]["msg"]


ZC = {"preset": "tiny", "config": {"batch_size": 8}}


def test_composite_end_to_end_with_a_real_worker(client, worker) -> None:  # type: ignore[no-untyped-def]
    from tests.test_worker_e2e import _post, _wait_done

    batch_id = _post(
        client,
        {
            "space": "nb201",
            "dataset": "synthetic_cifar10",
            "methods": [
                {"name": "params"},
                {"name": "flops"},
                {"name": "synflow", "preset": "tiny"},
                {"name": "naswot", **ZC},
                {"name": "jacob_cov", **ZC},
            ],
            "seed": 3,
            "options": {"composites": {"zc3": SPEC}},
            "items": [
                {"nb201_index": 1462, "label": "all3x3"},
                {"nb201_index": 1, "label": "idx1"},
                {"nb201_index": 1651, "label": "allnone"},
                {"nb201_index": 77, "label": "idx77"},
            ],
        },
    )
    _wait_done(client, batch_id, worker=worker)
    members = {
        m: {i["label"]: i for i in _ranking(client, batch_id, method=m, limit=10)["items"]}
        for m in ("synflow", "naswot", "jacob_cov")
    }
    named = _ranking(client, batch_id, method="zc3")
    assert named["method"] == "zc3" and named["partial"] is False
    spec = _ranking(client, batch_id, method=SPEC)
    assert [(i["label"], i["score"]) for i in named["items"]] == [
        (i["label"], i["score"]) for i in spec["items"]
    ]
    labels = ["all3x3", "idx1", "allnone", "idx77"]
    # recompute from the members' stored scores (through the pure module) and compare
    from app.services.reports.composite import Direction, MeasureScores, composite_ranks

    def value(item):  # type: ignore[no-untyped-def]
        return (
            item["score"]
            if item["score"] is not None
            else {"nan": NAN, "inf": INF, "-inf": -INF}.get(item["score_repr"])
        )

    expected = composite_ranks(
        [
            MeasureScores(m, Direction.HIGHER, {lab: value(members[m][lab]) for lab in labels})
            for m in ("synflow", "naswot", "jacob_cov")
        ],
        keys=labels,
    )
    by_label = {i["label"]: i for i in named["items"]}
    for entry in expected.entries:
        assert by_label[entry.key]["score"] == pytest.approx(entry.mean_rank)
        cost = sum(members[m][entry.key]["cost_s"] for m in members)
        assert by_label[entry.key]["cost_s"] == pytest.approx(cost)
    # the degenerate all-none cell has NaN jacob_cov and -inf naswot: imputed / ranked last there
    assert "jacob_cov" in by_label["allnone"]["info"]["imputed"]
    report = client.get(f"/v1/batches/{batch_id}/report", params={"ground_truth": "full", "bootstrap": 0})
    # no ground truth in this batch: the report says so; with one, zc3 is a row by default
    assert report.status_code == 422
    client.put(
        f"/v1/batches/{batch_id}/ground_truth/gt",
        json={
            "items": [
                {"label": lab, "value": v} for lab, v in zip(labels, [93.0, 89.0, 10.0, 85.0], strict=True)
            ]
        },
    )
    report = client.get(
        f"/v1/batches/{batch_id}/report", params={"ground_truth": "gt", "bootstrap": 0}
    ).json()
    assert "zc3" in report["methods"] and report["methods"]["zc3"]["n_used"] == 4
