"""Rankings and correlation reports as pure functions over plain rows (no database, no torch).

The plotting module (``app.services.reports.plots``) is not imported here: it pulls in matplotlib,
which only the plot endpoints need.
"""

from app.services.reports.markdown import report_markdown
from app.services.reports.ranking import rank_rows, score_is_usable
from app.services.reports.stats import (
    DEFAULT_PERCENTS,
    EvaluationRow,
    GroundTruth,
    bootstrap_ci,
    build_report,
    correlation,
    cost_summary,
    method_matrix,
    top_percent_table,
)

__all__ = [
    "DEFAULT_PERCENTS",
    "EvaluationRow",
    "GroundTruth",
    "bootstrap_ci",
    "build_report",
    "correlation",
    "cost_summary",
    "method_matrix",
    "rank_rows",
    "report_markdown",
    "score_is_usable",
    "top_percent_table",
]
