"""Zero-cost measures on real NAS-Bench-201 networks from the space's builder."""

from __future__ import annotations

import math

import pytest

from app.genotypes import nb201 as nb201_genotype
from tests.zero_cost_support import LocalContext, requests_for
from worker.methods.zero_cost import run_zero_cost
from worker.methods.zero_cost.jacob_cov import NO_PATH
from worker.methods.zero_cost.naswot import SINGULAR

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
INDEX_1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
SMALL = {"network": {"C": 8, "N": 1}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_genotypes_are_the_benchmark_indices() -> None:
    assert nb201_genotype.index_of(nb201_genotype.parse_ops(ALL_NONE)) == 1651
    assert nb201_genotype.index_of(nb201_genotype.parse_ops(INDEX_1)) == 1


def test_all_none_cell_synflow_is_zero_and_other_proxies_are_non_finite() -> None:
    names = ["synflow", "synflow_bn", "jacob_cov", "naswot"]
    requests = requests_for([(name, SMALL) for name in names] + ["synflow"], genotype=ALL_NONE)
    results = run_zero_cost(requests, LocalContext())
    synflow_small, synflow_bn, jacob, naswot, synflow_default = results
    for result in (synflow_small, synflow_bn, synflow_default):
        assert result.score == 0.0 and result.finite and result.reason is None
    assert math.isnan(jacob.score) and not jacob.finite and jacob.reason == NO_PATH
    assert naswot.score == -math.inf and not naswot.finite and naswot.reason == SINGULAR


def test_params_and_flops_match_the_benchmark_sizes() -> None:
    ctx = LocalContext()
    params, flops = run_zero_cost(requests_for(["params", "flops"], genotype=INDEX_1), ctx)
    assert params.score == 802_426
    assert flops.score / 1e6 == pytest.approx(113.95, abs=0.005)
    params, flops = run_zero_cost(requests_for(["params", "flops"], genotype=ALL_NONE), ctx)
    assert params.score == 73_306
    assert flops.score / 1e6 == pytest.approx(7.78, abs=0.005)


def test_every_measure_is_finite_on_a_real_cell() -> None:
    names = ["grad_norm", "snip", "grasp", "fisher", "plain", "jacob_cov", "naswot", "synflow", "synflow_bn"]
    tiny = {"network": {"C": 4, "N": 1}}
    configs = [(n, {**tiny, "batch_size": 16} if n not in ("synflow", "synflow_bn") else tiny) for n in names]
    results = run_zero_cost(requests_for(configs, genotype=INDEX_1), LocalContext())
    for name, result in zip(names, results, strict=True):
        assert result.finite, (name, result.score, result.reason)
    synflow = results[names.index("synflow")]
    assert synflow.score > 1.0 and synflow.info["log10"] == pytest.approx(math.log10(synflow.score))
