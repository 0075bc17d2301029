"""The report's two pictures as PNG bytes: score vs ground truth, and cost vs Spearman.

matplotlib is imported on first use so the API starts without it, and only through the object API
(``Figure`` + the Agg canvas), never pyplot: pyplot keeps global figure state, which is not safe when
the API renders plots for concurrent requests. Images are exactly ``width_px`` × ``height_px`` pixels
(inches = pixels / dpi, saved without tight cropping).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.services.reports.stats import correlation, finite_or_none

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NOT_ENOUGH_DATA = "not enough data"
PANEL_HEIGHT_PX = 400
MAX_COLUMNS = 3
# scores spanning more than this factor (synflow: 1e30..1e60) are unreadable on a linear axis
LOG_SCALE_SPAN = 1e3


def _new_figure(width_px: int, height_px: int, dpi: int) -> Figure:
    if width_px < 50 or height_px < 50:
        raise ValueError(f"image too small: {width_px}×{height_px} px (at least 50×50)")
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; harmless when already selected
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure, dpi: int) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _empty_panel(axes: Axes, title: str | None = None, detail: str | None = None) -> None:
    text = NOT_ENOUGH_DATA if detail is None else f"{NOT_ENOUGH_DATA}\n{detail}"
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="0.4")
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title, fontsize=10)


def _finite_pairs(points: Sequence[tuple[float | None, float | None]]) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for gt, score in points:
        x, y = finite_or_none(gt), finite_or_none(score)
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def points_from_rows(
    rows_by_method: Mapping[str, Sequence[Mapping[str, Any]]], ground_truth: Mapping[str, float | None]
) -> dict[str, list[tuple[float | None, float | None]]]:
    """(ground truth, score) pairs per method for the scatter; rows without ground truth are left out."""
    return {
        name: [(ground_truth[row["key"]], row["score"]) for row in rows if row["key"] in ground_truth]
        for name, rows in rows_by_method.items()
    }


def entries_from_report(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One cost-vs-Spearman point per method of a ``build_report`` result (mean cost, ρ, its interval)."""
    entries = []
    for name, entry in report.get("methods", {}).items():
        ci = entry.get("spearman_ci") or {}
        entries.append(
            {
                "label": name,
                "cost_s": report.get("costs", {}).get(name, {}).get("mean_s"),
                "spearman": entry.get("spearman"),
                "ci_low": ci.get("low"),
                "ci_high": ci.get("high"),
            }
        )
    return entries


def _wants_log_scale(values: Sequence[float]) -> bool:
    """Positive scores spanning more than LOG_SCALE_SPAN (exact zeros ignored: synflow's all-`none`
    cell scores 0, and one such point must not force the other 19 onto a linear axis)."""
    positive = [v for v in values if v > 0]
    if len(positive) < 2 or any(v < 0 for v in values):
        return False
    return max(positive) / min(positive) > LOG_SCALE_SPAN


def _apply_score_scale(axes: Axes, ys: Sequence[float]) -> None:
    """Log scale for wide positive ranges; zeros then sit on a symlog floor one decade below the
    smallest positive score, and the axis says so."""
    if not _wants_log_scale(ys):
        return
    if min(ys) > 0:
        axes.set_yscale("log")
        return
    floor = min(v for v in ys if v > 0)
    axes.set_yscale("symlog", linthresh=floor)
    axes.axhline(0.0, color="0.6", linewidth=0.8, linestyle=":")
    zeros = sum(1 for v in ys if v == 0)
    axes.annotate(
        f"{zeros} at 0 (symlog axis, linear below {floor:.2g})",
        xy=(0.01, 0.01),
        xycoords="axes fraction",
        fontsize=8,
        color="0.4",
    )


def panel_title(name: str, rho: float | None, n: int, pending: int, dropped: int) -> str:
    """``pending``: not finished yet; ``dropped``: finished without a usable score (or ground truth)."""
    title = f"{name}: ρ = {'n/a' if rho is None else f'{rho:.3f}'} (n = {n})"
    if pending:
        title += f", {pending} pending"
    if dropped:
        title += f", {dropped} dropped"
    return title


def score_vs_ground_truth_png(
    points_by_method: Mapping[str, Sequence[tuple[float | None, float | None]]],
    width_px: int = 1200,
    height_px: int | None = None,
    dpi: int = 100,
    spearman_by_method: Mapping[str, float | None] | None = None,
    ground_truth_label: str = "ground-truth accuracy",
    pending_by_method: Mapping[str, int] | None = None,
) -> bytes:
    """One scatter per method of (ground truth, score) pairs, ρ in each title.

    Pairs with a missing or non-finite value are left out and counted in the title. ρ is computed from
    the plotted pairs unless ``spearman_by_method`` gives the report's value. ``height_px`` defaults to
    400 px per row of panels (at most 3 panels per row). ``pending_by_method`` counts evaluations not
    finished yet: they are not among the points, and the title says "pending", not "dropped".
    """
    names = list(points_by_method)
    columns = max(1, min(MAX_COLUMNS, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure = _new_figure(width_px, height_px or PANEL_HEIGHT_PX * rows, dpi)
    if not names:
        _empty_panel(figure.add_subplot(1, 1, 1), "score vs ground truth", "no methods")
        return _png(figure, dpi)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        points = points_by_method[name]
        xs, ys = _finite_pairs(points)
        dropped = len(points) - len(xs)
        if spearman_by_method is not None and name in spearman_by_method:
            rho = spearman_by_method[name]
        else:
            rho = correlation(xs, ys)["spearman"]
        title = panel_title(name, rho, len(xs), (pending_by_method or {}).get(name, 0), dropped)
        if not xs:
            _empty_panel(axes, title)
            continue
        axes.scatter(xs, ys, s=12, alpha=0.7, edgecolors="none")
        _apply_score_scale(axes, ys)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel(ground_truth_label)
        axes.set_ylabel("score")
        axes.grid(True, alpha=0.3)
    figure.tight_layout()  # rearranges axes inside the fixed canvas; the pixel size does not change
    return _png(figure, dpi)


def _placeable(entry: Mapping[str, Any]) -> bool:
    cost = finite_or_none(entry.get("cost_s"))
    # a log axis has no place for 0 s (static measures like params may record 0)
    return cost is not None and cost > 0 and finite_or_none(entry.get("spearman")) is not None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, ρ) points no other point dominates (as cheap or cheaper and at least as
    good, better in one), cheapest first: the methods worth choosing at some budget."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def cost_vs_spearman_png(
    entries: Sequence[Mapping[str, Any]],
    width_px: int = 900,
    height_px: int = 600,
    dpi: int = 100,
) -> bytes:
    """One labelled point per method or setting: x = mean cost per architecture (s, log), y = Spearman;
    the Pareto front (:func:`pareto_front`) is drawn as a dashed step line.

    Each entry has ``label``, ``cost_s``, ``spearman`` and optionally ``ci_low``/``ci_high`` (drawn as an
    error bar). Entries without a positive finite cost or without ρ cannot be placed and are skipped.
    """
    figure = _new_figure(width_px, height_px, dpi)
    axes = figure.add_subplot(1, 1, 1)
    title = "cost vs Spearman ρ with ground truth"
    placed = [entry for entry in entries if _placeable(entry)]
    if not placed:
        skipped = len(entries)
        _empty_panel(axes, title, f"{skipped} entr{'y' if skipped == 1 else 'ies'} without cost and ρ")
        return _png(figure, dpi)
    for entry in placed:
        x, y = float(entry["cost_s"]), float(entry["spearman"])
        low, high = finite_or_none(entry.get("ci_low")), finite_or_none(entry.get("ci_high"))
        if low is not None and high is not None:
            axes.errorbar([x], [y], yerr=[[max(0.0, y - low)], [max(0.0, high - y)]], fmt="o", capsize=3)
        else:
            axes.plot([x], [y], "o")
        axes.annotate(str(entry.get("label", "")), (x, y), textcoords="offset points", xytext=(5, 5))
    coords = [(float(e["cost_s"]), float(e["spearman"])) for e in placed]
    front = [coords[i] for i in pareto_front(coords)]
    if len(front) > 1:
        axes.step(
            [x for x, _ in front], [y for _, y in front], where="post", color="black", linewidth=1,
            linestyle="--", label="Pareto front (no method both cheaper and better)",
        )  # fmt: skip
        axes.legend(loc="lower right")
    axes.set_xscale("log")
    axes.set_xlabel("mean cost per architecture (s, log scale)")
    axes.set_ylabel("Spearman ρ")
    skipped = len(entries) - len(placed)
    axes.set_title(title + (f" ({skipped} skipped)" if skipped else ""))
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    return _png(figure, dpi)
