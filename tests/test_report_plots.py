"""The report's PNGs decode as images of the requested pixel size, whatever the data look like."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.services.reports import build_report
from app.services.reports.plots import (
    cost_vs_spearman_png,
    entries_from_report,
    points_from_rows,
    score_vs_ground_truth_png,
)

NAN, INF = float("nan"), float("inf")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode(data: bytes) -> Image.Image:
    assert data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _distinct_colours(image: Image.Image) -> int:
    return len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0))


def _points(n: int, seed: int = 0) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(80, 95, size=n)
    return list(zip(gt.tolist(), (gt + rng.normal(size=n)).tolist(), strict=True))


def test_score_vs_ground_truth_has_the_requested_size():
    data = score_vs_ground_truth_png(
        {"fear": _points(40), "synflow": _points(40, 1)}, width_px=777, height_px=333
    )
    image = _decode(data)
    assert image.size == (777, 333)
    assert _distinct_colours(image) > 10  # something was drawn


def test_score_vs_ground_truth_default_height_grows_with_rows_of_panels():
    four = {f"m{i}": _points(10, i) for i in range(4)}  # 3 per row -> 2 rows
    assert _decode(score_vs_ground_truth_png(four, width_px=900)).size == (900, 800)
    assert _decode(score_vs_ground_truth_png({"one": _points(5)}, width_px=500)).size == (500, 400)


@pytest.mark.parametrize(
    "points_by_method",
    [
        {},
        {"empty": []},
        {"nonfinite": [(90.0, NAN), (91.0, INF), (None, 1.0), (92.0, None)]},
        {"two": [(90.0, 1.0), (91.0, 2.0)], "constant": [(90.0, 1.0), (91.0, 1.0), (92.0, 1.0)]},
        {"synflow": [(90.0, 1e30), (91.0, 1e45), (92.0, 1e60), (93.0, INF)]},
    ],
)
def test_score_vs_ground_truth_survives_awkward_data(points_by_method):
    assert _decode(score_vs_ground_truth_png(points_by_method, width_px=600, height_px=300)).size == (
        600,
        300,
    )


def test_score_vs_ground_truth_empty_panel_differs_from_a_scatter():
    empty = np.asarray(_decode(score_vs_ground_truth_png({"m": []}, width_px=400, height_px=300)))
    full = np.asarray(_decode(score_vs_ground_truth_png({"m": _points(30)}, width_px=400, height_px=300)))
    assert not np.array_equal(empty, full)


def test_cost_vs_spearman_size_and_skipped_entries():
    entries = [
        {"label": "fear", "cost_s": 250.0, "spearman": 0.55, "ci_low": 0.4, "ci_high": 0.7},
        {"label": "shortreg e=5", "cost_s": 900.0, "spearman": 0.6},
        {"label": "synflow", "cost_s": 0.4, "spearman": 0.0},
        {"label": "params", "cost_s": 0.0, "spearman": 0.7},  # 0 s cannot sit on a log axis
        {"label": "pending", "cost_s": None, "spearman": None},
    ]
    image = _decode(cost_vs_spearman_png(entries, width_px=640, height_px=480))
    assert image.size == (640, 480)
    assert _distinct_colours(image) > 10


@pytest.mark.parametrize("entries", [[], [{"label": "x", "cost_s": None, "spearman": 0.3}]])
def test_cost_vs_spearman_without_data_is_a_note_panel(entries):
    assert _decode(cost_vs_spearman_png(entries, width_px=300, height_px=200)).size == (300, 200)


def test_too_small_images_are_refused():
    with pytest.raises(ValueError):
        cost_vs_spearman_png([], width_px=10, height_px=10)


def test_helpers_turn_rows_and_a_report_into_plot_inputs():
    gt = {"a": 90.0, "b": 91.0, "c": 92.0, "d": 93.0}
    rows = [
        {"key": key, "score": score, "finite": True, "status": "done", "cost_s": 2.0}
        for key, score in (("a", 1.0), ("b", 3.0), ("c", 2.0), ("d", 4.0), ("z", 9.0))
    ]
    points = points_from_rows({"m": rows}, gt)
    assert points == {"m": [(90.0, 1.0), (91.0, 3.0), (92.0, 2.0), (93.0, 4.0)]}
    report = build_report({"m": rows}, gt, n_boot=50)
    [entry] = entries_from_report(report)
    assert entry["label"] == "m" and entry["cost_s"] == 2.0
    assert entry["spearman"] == report["methods"]["m"]["spearman"] == pytest.approx(0.8)
    assert entry["ci_low"] == report["methods"]["m"]["spearman_ci"]["low"]
    assert _decode(cost_vs_spearman_png([entry], width_px=320, height_px=240)).size == (320, 240)


def test_wide_scores_with_an_exact_zero_still_get_a_log_like_scale() -> None:
    from app.services.reports.plots import _wants_log_scale

    synflow = [0.0] + [10.0**e for e in range(30, 49)]
    assert _wants_log_scale(synflow)  # one all-`none` cell must not flatten the other 19
    assert not _wants_log_scale([0.0, 1.0, 2.0])
    assert not _wants_log_scale([-5.0, 1.0, 1e9])  # negative scores: linear


def test_synflow_scatter_with_a_zero_renders() -> None:
    import io

    from PIL import Image

    from app.services.reports.plots import score_vs_ground_truth_png

    points = [(60.0 + i, 10.0 ** (30 + i)) for i in range(19)] + [(10.0, 0.0)]
    png = score_vs_ground_truth_png({"synflow": points}, width_px=400, height_px=300)
    assert Image.open(io.BytesIO(png)).size == (400, 300)


def test_pending_points_are_named_pending_not_dropped() -> None:
    from app.services.reports.plots import panel_title

    assert panel_title("fear", None, 0, 20, 0) == "fear: ρ = n/a (n = 0), 20 pending"
    assert "dropped" not in panel_title("fear", 0.5, 3, 17, 0)
    assert panel_title("fear", 0.5, 3, 0, 2).endswith("2 dropped")


def test_pareto_front_keeps_only_undominated_methods():
    from app.services.reports.plots import pareto_front

    points = [(0.002, 0.79), (0.02, 0.80), (0.3, 0.82), (0.44, 0.89), (57.0, 0.51), (0.7, 0.70), (0.02, 0.5)]
    # cheapest first; fear (57 s, 0.51) and the mid-cost 0.70 are dominated, as is the 0.5 tie on cost
    assert pareto_front(points) == [0, 1, 2, 3]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [0]  # an equal point does not extend the front
