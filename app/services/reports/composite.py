"""Composite rankings: several stored measures of the same architectures folded into one ranking.

A composite is the mean of per-measure ranks (rank aggregation à la Borda). Ranks, not raw scores, are
averaged because the measures live on unrelated scales (synflow spans hundreds of orders of magnitude,
naswot is a log-determinant, jacob_cov a spread of eigenvalues); a rank only needs each measure's order.

Rules (each one a choice where reasonable people differ; ``CompositeRules`` makes them explicit):

- Orientation: every measure is ranked so that rank 1 is its best architecture (a lower-is-better
  measure is ranked on its negated value). Ties share the average of the ranks they span
  (``scipy.stats.rankdata(method="average")``), in the measures and again in the composite rank.
- Composite score: the architecture's mean rank over the chosen measures. **Lower is better**, so the
  composite's direction is ``COMPOSITE_HIGHER_IS_BETTER = False``; its own rank (1 = best) ranks the
  mean ranks, ties averaged.
- ±inf (``InfiniteRule``): ``ORDER`` (default) ranks +inf above and -inf below every finite value, as
  their order says. Ranks need nothing but an order, and synflow's +inf is an overflow of a very large
  flow, i.e. the measure's strongest vote; calling it "unusable" would hand the architecture the worst
  rank instead. ``UNUSABLE`` treats ±inf like NaN, matching the per-measure ranking and the correlation
  statistics (which only take finite scores).
- NaN, None, or an architecture the measure has no entry for (not evaluated, failed, unmet, pending) —
  a *missing* value (``MissingRule``):
  - ``WORST`` (default): the architecture gets that measure's worst rank, tied with the other missing
    ones (n_usable + (k + 1) / 2 for k missing). On NB201 a NaN is what degenerate cells produce (a cell
    whose output ignores its input has a constant Jacobian: jacob_cov and naswot are undefined), and
    those are the worst architectures there are; a search controller must still see every candidate
    ordered, and dropping one because one proxy failed would silently shrink its shortlist. Which
    measures were imputed is reported per architecture (``imputed``).
  - ``EXCLUDE``: only architectures with a usable value in every chosen measure are ranked (complete
    cases), the ranks recomputed among them; the others are listed unranked with a reason naming the
    measure. Right for studies, where each composite rank should rest on the same evidence.
  Under either rule an architecture with no usable value in any chosen measure is unranked: there is
  nothing to rank it by.

Pure functions on plain typed values: no database, no torch.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from scipy.stats import rankdata, spearmanr

from app.services.reports.stats import MIN_PAIRS

COMPOSITE_PREFIX = "composite:"
COMPOSITE_HIGHER_IS_BETTER = False  # the composite score is a mean rank: 1 is the best possible
MAX_MEASURES = 16
# Separators between measures: "+" as written; whitespace because a query string decodes an unescaped
# "+" to a space (``?method=composite:synflow+naswot`` arrives as "composite:synflow naswot").
_SEPARATORS = re.compile(r"[+\s]")
# The method-alias alphabet of the batch schema, less "+" (the separator).
_MEASURE_NAME = re.compile(r"^[A-Za-z0-9_.:@-]+$")


class Direction(StrEnum):
    HIGHER = "higher"  # higher score = better architecture
    LOWER = "lower"


class MissingRule(StrEnum):
    WORST = "worst"
    EXCLUDE = "exclude"


class InfiniteRule(StrEnum):
    ORDER = "order"
    UNUSABLE = "unusable"


@dataclass(frozen=True)
class CompositeRules:
    missing: MissingRule = MissingRule.WORST
    infinite: InfiniteRule = InfiniteRule.ORDER


@dataclass(frozen=True)
class MeasureScores:
    """One measure's scores: architecture key → score (None = the evaluation produced none)."""

    name: str
    direction: Direction
    scores: Mapping[str, float | None]


@dataclass(frozen=True)
class CompositeEntry:
    key: str
    mean_rank: float | None  # the composite score; None when unranked
    rank: float | None  # 1 = best; ties share the average rank
    measure_ranks: Mapping[str, float]  # the per-measure ranks that were averaged (empty when unranked)
    imputed: tuple[str, ...] = ()  # measures where the worst rank stood in for a missing value
    reason: str | None = None  # why the entry is unranked


@dataclass(frozen=True)
class CompositeResult:
    measures: tuple[str, ...]
    rules: CompositeRules
    entries: tuple[CompositeEntry, ...]  # ranked ones best first, then the unranked ones

    @property
    def name(self) -> str:
        return composite_name(self.measures)

    def mean_ranks(self) -> dict[str, float]:
        """Architecture key → mean rank, ranked entries only (lower is better)."""
        return {e.key: e.mean_rank for e in self.entries if e.mean_rank is not None}


def composite_name(measures: Sequence[str]) -> str:
    return COMPOSITE_PREFIX + "+".join(measures)


def _usable_value(value: float | None, rules: CompositeRules) -> float | None:
    """The score as a float when it takes part in ranks under ``rules``, else None."""
    if value is None:
        return None
    number = float(value)
    if math.isnan(number) or (rules.infinite is InfiniteRule.UNUSABLE and math.isinf(number)):
        return None
    return number


def _usable(value: float | None, rules: CompositeRules) -> bool:
    return _usable_value(value, rules) is not None


def _measure_ranks(
    measure: MeasureScores, keys: Sequence[str], rules: CompositeRules
) -> tuple[dict[str, float], set[str]]:
    """Rank of every key in one measure (1 = best) and the keys whose rank was imputed as the worst."""
    value_of = {k: _usable_value(measure.scores.get(k), rules) for k in keys}
    usable = [k for k in keys if value_of[k] is not None]
    missing = [k for k in keys if value_of[k] is None]
    ranks: dict[str, float] = {}
    if usable:
        values = np.array([value_of[k] for k in usable], dtype=np.float64)
        # rankdata is ascending; negating a higher-is-better measure makes its best value rank 1
        # (and -(+inf) = -inf still sorts first, so ORDER needs no special case).
        oriented = -values if measure.direction is Direction.HIGHER else values
        ranks = {k: float(r) for k, r in zip(usable, rankdata(oriented, method="average"), strict=True)}
    worst = len(usable) + (len(missing) + 1) / 2.0
    ranks.update((k, worst) for k in missing)
    return ranks, set(missing)


# (measure name, ranked keys) -> that measure's ranks and imputed keys; lets choose_composite rank each
# measure once per half instead of once per candidate subset (the ranks do not depend on the subset
# when the ranked keys are the same).
_RankCache = dict[tuple[str, tuple[str, ...]], tuple[dict[str, float], set[str]]]


def composite_ranks(
    measures: Sequence[MeasureScores],
    rules: CompositeRules = CompositeRules(),
    keys: Iterable[str] | None = None,
) -> CompositeResult:
    """Rank the architectures by the mean of their per-measure ranks (rules: the module docstring).

    ``keys`` restricts (and orders the listing of) the architectures considered, e.g. a batch's items or
    one half of a split; by default every key any measure mentions, in first-seen order. A key listed
    but unknown to every measure is unranked. Ties in the composite keep the input order among
    themselves.
    """
    return _composite(measures, rules, keys, cache={})


def _composite(
    measures: Sequence[MeasureScores], rules: CompositeRules, keys: Iterable[str] | None, cache: _RankCache
) -> CompositeResult:
    if not measures:
        raise ValueError("a composite needs at least one measure")
    names = [m.name for m in measures]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"measure(s) listed twice in the composite: {', '.join(duplicated)}")
    candidates = list(dict.fromkeys(keys if keys is not None else (k for m in measures for k in m.scores)))

    usable_in = {k: [m.name for m in measures if _usable(m.scores.get(k), rules)] for k in candidates}
    unranked: dict[str, str] = {}
    for key in candidates:
        if not usable_in[key]:
            unranked[key] = "no usable score in any of the composite's measures"
        elif rules.missing is MissingRule.EXCLUDE and len(usable_in[key]) < len(measures):
            lacking = [n for n in names if n not in usable_in[key]]
            unranked[key] = f"excluded: no usable score for {', '.join(lacking)}"
    ranked_keys = [k for k in candidates if k not in unranked]

    per_measure: dict[str, dict[str, float]] = {}
    imputed: dict[str, list[str]] = {k: [] for k in ranked_keys}
    ranked_tuple = tuple(ranked_keys)
    for measure in measures:
        cache_key = (measure.name, ranked_tuple)
        if cache_key not in cache:
            cache[cache_key] = _measure_ranks(measure, ranked_keys, rules)
        ranks, missing = cache[cache_key]
        per_measure[measure.name] = ranks
        for key in missing:
            imputed[key].append(measure.name)

    entries: list[CompositeEntry] = []
    if ranked_keys:
        # ranks are multiples of 1/2, so these sums are exact and equal means tie exactly
        means = np.array([sum(per_measure[n][k] for n in names) / len(names) for k in ranked_keys])
        composite = rankdata(means, method="average")
        for i in np.argsort(composite, kind="stable"):
            key = ranked_keys[i]
            entries.append(
                CompositeEntry(
                    key=key,
                    mean_rank=float(means[i]),
                    rank=float(composite[i]),
                    measure_ranks={n: per_measure[n][key] for n in names},
                    imputed=tuple(imputed[key]),
                )
            )
    entries.extend(
        CompositeEntry(key=k, mean_rank=None, rank=None, measure_ranks={}, reason=unranked[k])
        for k in candidates
        if k in unranked
    )
    return CompositeResult(measures=tuple(names), rules=rules, entries=tuple(entries))


# --- the method spec string -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompositeSpec:
    measures: tuple[str, ...]

    @property
    def name(self) -> str:
        return composite_name(self.measures)


class CompositeSpecError(ValueError):
    """A composite spec was rejected; ``measure`` names the offending measure when there is one."""

    def __init__(self, message: str, measure: str | None = None) -> None:
        self.message = message
        self.measure = measure
        super().__init__(message)


def is_composite(method: str) -> bool:
    return method.startswith(COMPOSITE_PREFIX)


def parse_composite_spec(text: str, available: Collection[str] | None = None) -> CompositeSpec:
    """Parse ``composite:synflow+naswot+jacob_cov`` into its measures, in the order written.

    ``available`` is what the measures may name (e.g. the batch's method aliases); None skips that
    check. Every error says what is wrong and what would be accepted.
    """
    if not is_composite(text):
        raise CompositeSpecError(
            f"a composite is written {COMPOSITE_PREFIX}<measure>+<measure>..., got {text!r}"
        )
    body = text[len(COMPOSITE_PREFIX) :]
    parts = _SEPARATORS.split(body)
    if not body.strip():
        raise CompositeSpecError(
            f"{text!r} names no measure; write e.g. {COMPOSITE_PREFIX}synflow+naswot+jacob_cov"
        )
    measures: list[str] = []
    for position, part in enumerate(parts, start=1):
        if not part:
            raise CompositeSpecError(
                f"empty measure name at position {position} of {text!r} (two separators in a row, or one "
                "at an end); separate measures with a single '+'"
            )
        if not _MEASURE_NAME.match(part):
            raise CompositeSpecError(
                f"measure {part!r} has characters a method alias cannot have; allowed: letters, digits "
                "and _ . : @ -",
                measure=part,
            )
        if part in measures:
            raise CompositeSpecError(f"measure {part!r} is listed twice in {text!r}", measure=part)
        if available is not None and part not in available:
            known = ", ".join(sorted(available)) or "none"
            raise CompositeSpecError(
                f"unknown measure {part!r} in {text!r}; available here: {known}", measure=part
            )
        measures.append(part)
    if len(measures) > MAX_MEASURES:
        raise CompositeSpecError(f"a composite takes at most {MAX_MEASURES} measures, got {len(measures)}")
    return CompositeSpec(measures=tuple(measures))


# --- choosing a composite on one half and judging it on the other ---------------------------------


@dataclass(frozen=True)
class HalfSplit:
    selection: tuple[str, ...]  # the half the composite is chosen on
    evaluation: tuple[str, ...]  # the half it is reported on (never seen while choosing)


def split_in_half(keys: Iterable[str], seed: int) -> HalfSplit:
    """A seeded random halving of ``keys`` (order of ``keys`` does not matter; odd n: evaluation + 1)."""
    ordered = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(ordered))
    half = len(ordered) // 2
    return HalfSplit(
        selection=tuple(ordered[i] for i in order[:half]),
        evaluation=tuple(ordered[i] for i in order[half:]),
    )


@dataclass(frozen=True)
class CandidateScore:
    measures: tuple[str, ...]
    spearman: float | None  # against the ground truth on the selection half
    n: int  # architectures the Spearman used


@dataclass(frozen=True)
class CompositeChoice:
    chosen: tuple[str, ...]
    selection: CandidateScore  # the chosen composite on the selection half
    evaluation: CandidateScore  # the same composite, recomputed on the evaluation half alone
    candidates: tuple[CandidateScore, ...]  # every subset on the selection half, best first
    split: HalfSplit
    # the chosen composite's mean ranks on the evaluation half (lower is better), for bootstraps
    evaluation_mean_ranks: Mapping[str, float] = field(default_factory=dict)


def _spearman_on(
    measures: Sequence[MeasureScores],
    truth: Mapping[str, float | None],
    keys: Sequence[str],
    rules: CompositeRules,
    cache: _RankCache,
) -> tuple[CandidateScore, dict[str, float]]:
    mean_ranks = _composite(measures, rules, keys, cache).mean_ranks()
    pairs = [
        (float(t), -mean_ranks[k])  # mean rank is lower-is-better: negated, ρ > 0 means "like the truth"
        for k in keys
        if k in mean_ranks and (t := truth.get(k)) is not None and math.isfinite(t)
    ]
    rho = _spearman([t for t, _ in pairs], [s for _, s in pairs])
    return CandidateScore(tuple(m.name for m in measures), rho, len(pairs)), mean_ranks


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman ρ (scipy), None below MIN_PAIRS pairs or for a constant side, as stats.correlation says.

    Not stats.correlation itself: that one also computes Kendall's τ and both p-values, which a search
    over hundreds of subsets and halvings does not need.
    """
    if len(xs) < MIN_PAIRS or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    rho = float(spearmanr(xs, ys).statistic)
    return rho if math.isfinite(rho) else None


def choose_composite(
    measures: Sequence[MeasureScores],
    truth: Mapping[str, float | None],
    split: HalfSplit,
    *,
    sizes: Sequence[int] = (1, 2, 3),
    rules: CompositeRules = CompositeRules(),
) -> CompositeChoice:
    """Try every subset of ``measures`` with a size in ``sizes``; keep the one with the highest Spearman
    against ``truth`` on ``split.selection``; report it recomputed on ``split.evaluation`` only.

    Ties in selection ρ go to the smaller subset, then to the earlier one in ``measures`` order (the
    simpler composite, the one a user listed first). Only the chosen composite is scored on the
    evaluation half, so nothing there informs the choice.
    """
    if not measures:
        raise ValueError("choose_composite needs at least one measure")
    bad_sizes = [s for s in sizes if not 1 <= s <= len(measures)]
    if bad_sizes or not sizes:
        raise ValueError(f"sizes must lie in 1..{len(measures)} (the number of measures), got {list(sizes)}")
    candidates: list[tuple[CandidateScore, int]] = []
    selection_cache: _RankCache = {}
    for size in sorted(set(sizes)):
        for subset in itertools.combinations(measures, size):
            score, _ = _spearman_on(subset, truth, split.selection, rules, selection_cache)
            candidates.append((score, len(candidates)))
    defined = [(c, i) for c, i in candidates if c.spearman is not None]
    if not defined:
        raise ValueError("no candidate composite has a defined Spearman on the selection half")
    ordered = sorted(defined, key=lambda item: (-(item[0].spearman or 0.0), len(item[0].measures), item[1]))
    best = ordered[0][0]
    by_name = {m.name: m for m in measures}
    evaluation, mean_ranks = _spearman_on(
        [by_name[n] for n in best.measures], truth, split.evaluation, rules, {}
    )
    undefined = [c for c, _ in candidates if c.spearman is None]
    return CompositeChoice(
        chosen=best.measures,
        selection=best,
        evaluation=evaluation,
        candidates=tuple(c for c, _ in ordered) + tuple(undefined),
        split=split,
        evaluation_mean_ranks=mean_ranks,
    )
