"""One spec per space and per method/measure: the catalogue, the validators and the worker read the
same registry, so what the API offers is exactly what the worker runs."""

from __future__ import annotations

from typing import Any, get_args

import pytest
import torch

from app.catalog.base import NetworkOptions
from app.catalog.methods import all_methods, resolve
from app.catalog.training import check_network
from app.catalog.zero_cost import MEASURE_SPEC
from app.errors import InputError
from app.genotypes import SPACES as PARSERS
from app.spaces import SPACES, SpaceName
from worker.methods.registry import implemented
from worker.methods.zero_cost.registry import implementations
from worker.spaces import BUILDERS, build
from worker.spaces.base import NetworkSpec

# A value different from the default for every option a space might take.
NON_DEFAULT: dict[str, Any] = {"C": 8, "N": 1, "layers": 4, "auxiliary": True, "drop_path": 0.1}


def test_every_method_spec_has_a_worker_implementation_and_the_reverse() -> None:
    assert set(all_methods()) == set(implemented())


def test_every_measure_spec_has_an_implementation_and_the_reverse() -> None:
    assert set(MEASURE_SPEC) == set(implementations())


def test_every_space_has_a_parser_a_spec_and_a_builder() -> None:
    assert set(SPACES) == set(PARSERS) == set(BUILDERS) == set(get_args(SpaceName))


@pytest.mark.parametrize("space", list(SPACES))
def test_the_options_a_space_offers_are_the_ones_its_builder_takes(space: str) -> None:
    spec = SPACES[space]
    genotype = spec.genotype.example
    for option in spec.options:
        network = NetworkOptions.model_validate({option: NON_DEFAULT[option]})
        assert check_network(space, "cifar10", network.model_dump()) is None
        model = build(NetworkSpec(space, genotype, 10, 32, spec.builder_options(network)))
        assert isinstance(model, torch.nn.Module)
    for option in set(NON_DEFAULT) - set(spec.options):
        problem = check_network(space, "cifar10", {option: NON_DEFAULT[option]})
        assert problem is not None and problem[0] == ["network", option], option
        with pytest.raises(ValueError):
            spec.builder_options(NetworkOptions.model_validate({option: NON_DEFAULT[option]}))


def test_nats_sss_offers_no_network_option_and_rejects_c_and_n() -> None:
    assert SPACES["nats_sss"].network_options() == {}
    for option in ("C", "N"):
        with pytest.raises(InputError) as err:
            resolve("fear", "paper", {"network": {option: 8}}, "nats_sss", "cifar10", ["methods", 0])
        assert err.value.errors[0]["loc"][-1] == option


@pytest.mark.parametrize("space", list(SPACES))
def test_the_freeze_rule_names_modules_the_builder_creates(space: str) -> None:
    spec = SPACES[space]
    network = NetworkOptions()
    model = build(NetworkSpec(space, spec.genotype.example, 10, 32, spec.builder_options(network)))
    names = {name for name, _ in model.named_modules()}
    assert set(spec.default_unfreeze(network)) <= names
    assert set(spec.module_names(network)) <= names | {"cells"}


def test_catalogue_entries_come_from_the_spec() -> None:
    nb201 = SPACES["nb201"].network_options()
    assert nb201["C"]["default"] == 16 and nb201["N"]["default"] == 5
    darts = SPACES["darts"].network_options()
    assert set(darts) == {"C", "layers", "auxiliary", "drop_path", "auxiliary_weight"}


def test_the_specs_never_import_torch() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, app.spaces, app.catalog.methods; sys.exit(1 if 'torch' in sys.modules else 0)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
