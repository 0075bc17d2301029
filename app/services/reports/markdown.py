"""Render a report dict from ``build_report`` as Markdown for people (the JSON stays the contract)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MISSING = "—"


def _cell(text: Any) -> str:
    # a pipe inside a cell would split it; method names and notes are free text
    return str(text).replace("|", "\\|")


def _number(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return MISSING
    # sub-second zero-cost timings need significant digits; FEAR's hundreds of seconds do not
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _interval(ci: dict[str, Any] | None) -> str:
    if not ci or ci.get("low") is None or ci.get("high") is None:
        return MISSING
    return f"[{ci['low']:.3f}, {ci['high']:.3f}]"


def _method_table(methods: dict[str, Any]) -> list[str]:
    level = next((e["spearman_ci"]["level"] for e in methods.values() if e.get("spearman_ci")), 0.95)
    header = [
        "method",
        "Spearman ρ",
        f"{level:.0%} CI",
        "Kendall τ",
        "used",
        "non-finite",
        "unmet",
        "rejected",
        "failed",
        "pending",
        "missing",
        "note",
    ]
    rows = [
        [
            name,
            _number(e["spearman"]),
            _interval(e.get("spearman_ci")),
            _number(e["kendall"]),
            e["n_used"],
            e["n_nonfinite"],
            e["n_unmet"],
            e["n_rejected"],
            e["n_failed"] + e.get("n_lost", 0),
            e["n_pending"],
            e["n_missing"],
            e["note"] or "",
        ]
        for name, e in methods.items()
    ]
    return _table(header, rows)


def _top_percent_table(entries: list[dict[str, Any]]) -> list[str]:
    rows = []
    for row in entries:
        duration = _seconds(row["duration_mean_s"])
        if row["duration_std_s"] is not None:
            duration += f" ± {_seconds(row['duration_std_s'])}"
        rows.append([f"{row['p']:g}", row["k"], _number(row["spe"], 2), _number(row["common"], 2), duration])
    return _table(["top %", "k", "spe", "common", "duration (s)"], rows)


def _matrix_table(matrix: dict[str, dict[str, float | None]]) -> list[str]:
    names = list(matrix)
    rows = [[name] + [_number(matrix[name].get(other), 2) for other in names] for name in names]
    return _table(["", *names], rows)


def _cost_table(costs: dict[str, dict[str, Any]], reference: str) -> list[str]:
    rows = [
        [
            name,
            c["n"],
            _seconds(c["mean_s"]),
            _seconds(c["total_s"]),
            MISSING if c["ratio_to_reference"] is None else f"{c['ratio_to_reference']:.3g}",
        ]
        for name, c in costs.items()
    ]
    return _table(["method", "n", "mean s / arch", "total s", f"× {reference}"], rows)


def report_markdown(report: dict[str, Any], title: str = "Correlation report") -> str:
    """Per-method correlation table, one top-% table per method, the method matrix and the cost table."""
    truth = report.get("ground_truth", {})
    name = truth.get("name") or "supplied ground truth"
    lines = [f"# {title}", "", f"Ground truth: {name} ({truth.get('n', 0)} architectures).", ""]
    if report.get("partial"):
        lines += [
            f"**Partial results: {report.get('n_pending', 0)} evaluations are still queued or running;** "
            f"{MISSING} marks what is not computed yet.",
            "",
        ]
    methods = report.get("methods", {})
    lines += ["## Correlation with ground truth", ""]
    lines += _method_table(methods) if methods else ["No methods."]
    for method, entry in methods.items():
        lines += ["", f"## Top-% table: {method}", ""]
        lines += _top_percent_table(entry["top_percent"])
    if report.get("matrix"):
        lines += ["", "## Method vs method (Spearman ρ)", "", *_matrix_table(report["matrix"])]
    if report.get("costs"):
        lines += ["", "## Cost", "", *_cost_table(report["costs"], report.get("reference", "fear"))]
    return "\n".join(lines) + "\n"
