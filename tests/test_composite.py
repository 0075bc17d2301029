"""Composite rankings against hand-computed ranks (rules in app/services/reports/composite.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.services.reports.composite import (
    COMPOSITE_HIGHER_IS_BETTER,
    CompositeResult,
    CompositeRules,
    CompositeSpecError,
    Direction,
    HalfSplit,
    InfiniteRule,
    MeasureScores,
    MissingRule,
    choose_composite,
    composite_ranks,
    parse_composite_spec,
    split_in_half,
)
from app.services.reports.ranking import rank_rows

HIGHER, LOWER = Direction.HIGHER, Direction.LOWER
EXCLUDE = CompositeRules(missing=MissingRule.EXCLUDE)
NO_INF = CompositeRules(infinite=InfiniteRule.UNUSABLE)


def summary(result: CompositeResult) -> dict[str, tuple[float | None, float | None]]:
    """key -> (mean rank, composite rank)"""
    return {e.key: (e.mean_rank, e.rank) for e in result.entries}


def test_ties_share_average_ranks_in_measures_and_composite() -> None:
    # A (higher better): a, c tie at the top -> 1.5 each; d 3; b 4.
    # B (lower better):  b, d tie at the top -> 1.5 each; a 3; c 4.
    # means a 2.25, b 2.75, c 2.75, d 2.25 -> composite a, d tie at 1.5; b, c tie at 3.5.
    result = composite_ranks(
        [
            MeasureScores("A", HIGHER, {"a": 3.0, "b": 1.0, "c": 3.0, "d": 2.0}),
            MeasureScores("B", LOWER, {"a": 0.5, "b": 0.1, "c": 0.9, "d": 0.1}),
        ]
    )
    assert summary(result) == {"a": (2.25, 1.5), "d": (2.25, 1.5), "b": (2.75, 3.5), "c": (2.75, 3.5)}
    assert [e.key for e in result.entries] == ["a", "d", "b", "c"]  # ties keep the input order
    assert result.entries[0].measure_ranks == {"A": 1.5, "B": 3.0}
    assert result.name == "composite:A+B"
    assert COMPOSITE_HIGHER_IS_BETTER is False


def test_lower_is_better_measure_is_ranked_on_its_negation() -> None:
    scores = {"a": 0.3, "b": 0.1, "c": 0.2}
    lower = composite_ranks([MeasureScores("loss", LOWER, scores)])
    higher = composite_ranks([MeasureScores("acc", HIGHER, scores)])
    assert summary(lower) == {"b": (1.0, 1.0), "c": (2.0, 2.0), "a": (3.0, 3.0)}
    assert summary(higher) == {"a": (1.0, 1.0), "c": (2.0, 2.0), "b": (3.0, 3.0)}


def test_nan_and_missing_get_the_worst_rank_by_default() -> None:
    # A: c 1, a 2; b (NaN) and d (None) tie for the worst: 2 + (2 + 1) / 2 = 3.5.
    # B: d 1, c 2, b 3, a 4.  Means: a 3, b 3.25, c 1.5, d 2.25.
    measures = [
        MeasureScores("A", HIGHER, {"a": 1.0, "b": math.nan, "c": 3.0, "d": None}),
        MeasureScores("B", HIGHER, {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}),
    ]
    result = composite_ranks(measures)
    assert summary(result) == {"c": (1.5, 1.0), "d": (2.25, 2.0), "a": (3.0, 3.0), "b": (3.25, 4.0)}
    imputed = {e.key: e.imputed for e in result.entries}
    assert imputed == {"a": (), "b": ("A",), "c": (), "d": ("A",)}


def test_exclude_rule_ranks_complete_cases_only_and_says_why() -> None:
    measures = [
        MeasureScores("A", HIGHER, {"a": 1.0, "b": math.nan, "c": 3.0, "d": None}),
        MeasureScores("B", HIGHER, {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}),
    ]
    result = composite_ranks(measures, EXCLUDE)
    # ranks recomputed among a and c alone: c is first in both measures
    assert summary(result) == {"c": (1.0, 1.0), "a": (2.0, 2.0), "b": (None, None), "d": (None, None)}
    reasons = {e.key: e.reason for e in result.entries if e.rank is None}
    assert reasons == {"b": "excluded: no usable score for A", "d": "excluded: no usable score for A"}


def test_architecture_absent_from_a_measure_counts_as_missing() -> None:
    # A: c 1, b 2, a 3.  B never scored c: a 1, b 2, c takes the worst rank 3.  All means are 2,
    # a three-way tie at rank 2. Under EXCLUDE c drops out and a, b tie at 1.5.
    measures = [
        MeasureScores("A", HIGHER, {"a": 1.0, "b": 2.0, "c": 3.0}),
        MeasureScores("B", HIGHER, {"a": 2.0, "b": 1.0}),
    ]
    assert summary(composite_ranks(measures)) == {"a": (2.0, 2.0), "b": (2.0, 2.0), "c": (2.0, 2.0)}
    by_key = {e.key: e for e in composite_ranks(measures).entries}
    assert by_key["c"].measure_ranks == {"A": 1.0, "B": 3.0}
    assert by_key["c"].imputed == ("B",)
    excluded = composite_ranks(measures, EXCLUDE)
    assert summary(excluded) == {"a": (1.5, 1.5), "b": (1.5, 1.5), "c": (None, None)}


def test_infinities_are_ordered_by_default_or_unusable_on_request() -> None:
    synflow = {"a": math.inf, "b": 1.0, "c": -math.inf, "d": math.nan}
    params = MeasureScores("params", HIGHER, {"a": 4.0, "b": 3.0, "c": 1.0, "d": 2.0})  # a 1, b 2, d 3, c 4
    # ORDER: synflow a 1 (+inf best), b 2, c 3 (-inf below every finite value), d 4 (NaN: worst, alone).
    # Means a 1, b 2, c 3.5, d 3.5.
    ordered = composite_ranks([MeasureScores("synflow", HIGHER, synflow), params])
    assert summary(ordered) == {"a": (1.0, 1.0), "b": (2.0, 2.0), "c": (3.5, 3.5), "d": (3.5, 3.5)}
    # lower-is-better: -inf is now the best
    flipped = composite_ranks([MeasureScores("loss", LOWER, synflow), params])
    assert {e.key: e.measure_ranks["loss"] for e in flipped.entries} == {
        "c": 1.0,
        "b": 2.0,
        "a": 3.0,
        "d": 4.0,
    }
    # UNUSABLE: synflow b 1; a, c, d share the worst rank 1 + (3 + 1) / 2 = 3.
    # Means a 2, b 1.5, c 3.5, d 3.
    unusable = composite_ranks([MeasureScores("synflow", HIGHER, synflow), params], NO_INF)
    assert summary(unusable) == {"b": (1.5, 1.0), "a": (2.0, 2.0), "d": (3.0, 3.0), "c": (3.5, 4.0)}
    assert {e.key: e.imputed for e in unusable.entries} == {
        "a": ("synflow",),
        "b": (),
        "c": ("synflow",),
        "d": ("synflow",),
    }


def test_single_measure_gives_that_measures_rank_order() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 6, size=30).astype(float)  # plenty of ties
    scores = {f"k{i}": float(v) for i, v in enumerate(values)}
    result = composite_ranks([MeasureScores("m", HIGHER, scores)])
    service_ranking = rank_rows({"key": k, "score": v, "status": "done"} for k, v in scores.items())
    expected = {row["key"]: row["rank"] for row in service_ranking}
    assert {e.key: e.rank for e in result.entries} == expected
    assert [e.key for e in result.entries] == [row["key"] for row in service_ranking]


def test_no_usable_value_anywhere_is_unranked_and_does_not_shift_worst_ranks() -> None:
    measures = [
        MeasureScores("A", HIGHER, {"a": 2.0, "b": 1.0, "z": math.nan}),
        MeasureScores("B", HIGHER, {"a": 1.0, "b": None, "z": None}),
    ]
    result = composite_ranks(measures, keys=["a", "b", "z", "ghost"])
    # universe {a, b}: A a 1, b 2; B a 1, b imputed 2 (z is not ranked, so it does not take a place)
    assert summary(result) == {"a": (1.0, 1.0), "b": (2.0, 2.0), "z": (None, None), "ghost": (None, None)}
    reasons = {e.key: e.reason for e in result.entries if e.rank is None}
    assert reasons == {
        "z": "no usable score in any of the composite's measures",
        "ghost": "no usable score in any of the composite's measures",
    }


def test_keys_restrict_the_ranked_set() -> None:
    measure = MeasureScores("A", HIGHER, {"a": 3.0, "b": 2.0, "c": 1.0})
    assert summary(composite_ranks([measure], keys=["c", "b"])) == {"b": (1.0, 1.0), "c": (2.0, 2.0)}


def test_bad_measure_lists_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one measure"):
        composite_ranks([])
    twice = MeasureScores("A", HIGHER, {"a": 1.0})
    with pytest.raises(ValueError, match=r"listed twice.*: A"):
        composite_ranks([twice, twice])


# --- the spec string ---------------------------------------------------------------------------------


def test_parse_spec_keeps_the_written_order() -> None:
    spec = parse_composite_spec("composite:synflow+naswot+jacob_cov", {"synflow", "naswot", "jacob_cov"})
    assert spec.measures == ("synflow", "naswot", "jacob_cov")
    assert spec.name == "composite:synflow+naswot+jacob_cov"
    # a query string decodes an unescaped "+" to a space; aliases may hold "-", "@", ":"
    assert parse_composite_spec("composite:synflow naswot").measures == ("synflow", "naswot")
    assert parse_composite_spec("composite:shortreg-e2+fear@cpu").measures == ("shortreg-e2", "fear@cpu")
    assert parse_composite_spec("composite:synflow").measures == ("synflow",)


@pytest.mark.parametrize(
    ("text", "measure", "fragment"),
    [
        ("synflow+naswot", None, "composite:<measure>"),
        ("composite:", None, "names no measure"),
        ("composite:synflow++naswot", None, "empty measure name at position 2"),
        ("composite:synflow+", None, "empty measure name at position 2"),
        ("composite:synflow+naswot+synflow", "synflow", "'synflow' is listed twice"),
        ("composite:synflow+snyflow", "snyflow", "unknown measure 'snyflow'"),
        ("composite:synflow+nas/wot", "nas/wot", "measure 'nas/wot' has characters"),
    ],
)
def test_parse_spec_errors_name_the_bad_measure(text: str, measure: str | None, fragment: str) -> None:
    with pytest.raises(CompositeSpecError) as caught:
        parse_composite_spec(text, {"synflow", "naswot", "nas/wot"})
    assert caught.value.measure == measure
    assert fragment in str(caught.value)


def test_unknown_measure_error_lists_what_is_available() -> None:
    with pytest.raises(CompositeSpecError, match=r"available here: jacob_cov, naswot, synflow"):
        parse_composite_spec("composite:grasp", ["synflow", "naswot", "jacob_cov"])


def test_too_many_measures() -> None:
    names = [f"m{i}" for i in range(17)]
    with pytest.raises(CompositeSpecError, match="at most 16"):
        parse_composite_spec("composite:" + "+".join(names))


# --- choosing on one half, reporting on the other ----------------------------------------------------


def test_split_in_half_is_seeded_disjoint_and_order_free() -> None:
    keys = [f"k{i}" for i in range(11)]
    split = split_in_half(keys, seed=5)
    assert len(split.selection) == 5 and len(split.evaluation) == 6
    assert set(split.selection).isdisjoint(split.evaluation)
    assert set(split.selection) | set(split.evaluation) == set(keys)
    assert split_in_half(reversed(keys), seed=5) == split
    assert split_in_half(keys, seed=6) != split


def _fixture() -> tuple[list[MeasureScores], dict[str, float], HalfSplit]:
    # Selection half s1..s4 (truth 1..4): x and y each reach ρ = 0.8, their mean rank orders s1..s4
    # perfectly (s4 1, s3 2.5, s2 3, s1 3.5); z is reversed (ρ = -1).
    # Evaluation half e1..e4 (truth 5..8): x perfect, y swaps e3/e4 -> mean ranks 4, 3, 1.5, 1.5,
    # Spearman of (1, 2, 3.5, 3.5) against (1, 2, 3, 4) = 4.5 / sqrt(4.5 · 5) = 3 / sqrt(10).
    truth = {"s1": 1, "s2": 2, "s3": 3, "s4": 4, "e1": 5, "e2": 6, "e3": 7, "e4": 8}
    x = {"s1": 1, "s2": 3, "s3": 2, "s4": 4, "e1": 1, "e2": 2, "e3": 3, "e4": 4}
    y = {"s1": 2, "s2": 1, "s3": 3, "s4": 4, "e1": 1, "e2": 2, "e3": 4, "e4": 3}
    z = {"s1": 4, "s2": 3, "s3": 2, "s4": 1, "e1": 4, "e2": 3, "e3": 2, "e4": 1}
    measures = [
        MeasureScores(name, HIGHER, {k: float(v) for k, v in scores.items()})
        for name, scores in (("x", x), ("y", y), ("z", z))
    ]
    split = HalfSplit(selection=("s1", "s2", "s3", "s4"), evaluation=("e1", "e2", "e3", "e4"))
    return measures, {k: float(v) for k, v in truth.items()}, split


def test_choose_composite_picks_on_selection_and_reports_on_evaluation() -> None:
    measures, truth, split = _fixture()
    choice = choose_composite(measures, truth, split)
    assert choice.chosen == ("x", "y")
    assert choice.selection.spearman == pytest.approx(1.0)
    assert choice.selection.n == 4
    assert choice.evaluation.spearman == pytest.approx(3 / math.sqrt(10))
    assert choice.evaluation.n == 4
    assert dict(choice.evaluation_mean_ranks) == {"e1": 4.0, "e2": 3.0, "e3": 1.5, "e4": 1.5}
    # 3 singles + 3 pairs + 1 triple, best first
    assert len(choice.candidates) == 7
    assert choice.candidates[0].measures == ("x", "y")
    singles = {c.measures: c.spearman for c in choice.candidates if len(c.measures) == 1}
    assert singles == pytest.approx({("x",): 0.8, ("y",): 0.8, ("z",): -1.0})


def test_choose_composite_prefers_the_smaller_subset_on_a_tie() -> None:
    measures, truth, split = _fixture()
    x = measures[0]
    perfect = MeasureScores("p", HIGHER, {k: v for k, v in truth.items()})
    # p alone and p + x both order the selection half perfectly: the single measure wins
    choice = choose_composite([x, perfect], truth, split, sizes=(1, 2))
    assert choice.chosen == ("p",)
    assert choice.evaluation.spearman == pytest.approx(1.0)


def test_choose_composite_never_looks_at_the_evaluation_half() -> None:
    measures, truth, split = _fixture()
    # "lucky" is perfect on the selection half and reversed on the evaluation half
    lucky = MeasureScores("lucky", HIGHER, {k: (v if k.startswith("s") else -v) for k, v in truth.items()})
    choice = choose_composite([*measures, lucky], truth, split, sizes=(1,))
    assert choice.chosen == ("lucky",)
    assert choice.evaluation.spearman == pytest.approx(-1.0)


def test_choose_composite_rejects_impossible_sizes() -> None:
    measures, truth, split = _fixture()
    with pytest.raises(ValueError, match=r"sizes must lie in 1\.\.3"):
        choose_composite(measures, truth, split, sizes=(4,))
