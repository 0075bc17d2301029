"""Rank a batch's evaluations of one method (reports.md, "Ranking").

Rule chosen where the specs pull apart: a score of ±inf (synflow overflowing float64) is the "largest"
value by zero_cost.md, yet every statistic drops non-finite values. The ranking follows reports.md and
the statistics: only finite scores of ``done`` evaluations get a rank, so rank r here is the r-th value
the correlation report sees. A ``+inf`` row is listed first among the unranked rows, with a reason that
says it overflowed, so a NAS controller reading the list still meets it right after the ranked ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.stats import rankdata

# Listing order of the unranked rows: the most informative first (an overflowed best-looking score, then
# the FEAR outcomes, then evaluations that produced nothing, then the ones still pending).
_UNRANKED_ORDER = (
    "overflow_best",
    "overflow_worst",
    "nan",
    "no_score",
    "unmet",
    "rejected",
    "failed",
    "lost",
    "filtered",
    "cancelled",
    "running",
    "queued",
    "waiting",
    "unknown",
)
_UNRANKED_POSITION = {name: i for i, name in enumerate(_UNRANKED_ORDER)}

_STATUS_REASONS = {
    "unmet": "unmet: never reached the stage-1 accuracy threshold within the epoch cap",
    "rejected": "rejected: stage 1 ran past the search's time cap (ratio × fastest)",
    "failed": "failed",
    "lost": "lost: the worker stopped sending heartbeats and retries ran out",
    "cancelled": "cancelled: stopped on request (the batch was cancelled or its failure budget ran out)",
    "running": "pending: still running",
    "queued": "pending: queued",
    "filtered": "filtered by funnel",
    "waiting": "pending: waiting for the funnel's cheap stage",
}


def score_is_usable(row: Mapping[str, Any]) -> bool:
    """True when a row takes part in ranks and statistics: done, finite flag set, a finite number."""
    score = row.get("score")
    return (
        row.get("status") == "done"
        and bool(row.get("finite", True))
        and score is not None
        and math.isfinite(float(score))
    )


def _unranked_category(row: Mapping[str, Any], higher_is_better: bool) -> tuple[str, str]:
    """(category, human-readable reason) for a row that gets no rank."""
    status = row.get("status")
    if status == "done":
        score = row.get("score")
        if score is None:
            return "no_score", "done without a score"
        value = float(score)
        if math.isnan(value):
            return "nan", "non-finite score: NaN (undefined, e.g. a constant Jacobian row)"
        if math.isinf(value):
            best = (value > 0) == higher_is_better
            sign = "+inf" if value > 0 else "-inf"
            if best:
                return "overflow_best", f"non-finite score: {sign} (overflow: the best possible value)"
            return "overflow_worst", f"non-finite score: {sign} (the worst possible value)"
        # A finite number whose stored flag says otherwise: trust the flag, the worker knew why.
        return "nan", "score flagged non-finite by the worker"
    if status in _STATUS_REASONS:
        reason = _STATUS_REASONS[status]
        error = row.get("error")
        if status == "failed" and error:
            reason = f"failed: {error}"
        return str(status), reason
    return "unknown", f"unknown status: {status!r}"


def rank_rows(rows: Iterable[Mapping[str, Any]], higher_is_better: bool = True) -> list[dict[str, Any]]:
    """Return copies of ``rows`` in ranking order with ``rank``, ``position`` and ``reason`` added.

    Each row needs ``status`` and ``score`` (``finite`` defaults to True); every other field is passed
    through. Ranked rows come first, best first; ties share the average of the 1-based ranks they span
    (so ``rank`` is a float: 1.0, 2.5, ...), and keep their input order among themselves. Unranked rows
    follow with ``rank`` None and a ``reason``; ``position`` is the 1-based place in the whole listing.
    """
    materialised = [dict(row) for row in rows]
    ranked = [row for row in materialised if score_is_usable(row)]
    unranked = [row for row in materialised if not score_is_usable(row)]

    if ranked:
        values = np.array([float(row["score"]) for row in ranked], dtype=np.float64)
        # rankdata ranks ascending; negating turns "higher is better" into "rank 1 is best".
        ranks = rankdata(-values if higher_is_better else values, method="average")
        order = np.argsort(ranks, kind="stable")
        ranked = [ranked[i] | {"rank": float(ranks[i]), "reason": None} for i in order]

    annotated = []
    for index, row in enumerate(unranked):
        category, reason = _unranked_category(row, higher_is_better)
        annotated.append((_UNRANKED_POSITION[category], index, row | {"rank": None, "reason": reason}))
    annotated.sort(key=lambda item: (item[0], item[1]))

    listing = ranked + [row for _, _, row in annotated]
    for position, row in enumerate(listing, start=1):
        row["position"] = position
    return listing
