"""What the service knows about one search space, torch-free: its genotype parser, which network
options apply and their defaults, the module names its builder creates and FEAR's freeze rule.

The API catalogue (``GET /v1/spaces``), the config validators and the worker's builders all read
this one spec, so an option offered for a space is exactly an option its builder accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.catalog.base import NetworkOptions
from app.genotypes.base import SpaceDef

# A network option counts as "set" when it differs from these (the stored configs carry every
# option of ``NetworkOptions``, unset ones as null/false/0).
_UNSET: tuple[Any, ...] = (None, False, 0, 0.0)
# A loss weight, read by the training loop; never a builder argument.
TRAINING_ONLY_OPTIONS = frozenset({"auxiliary_weight"})


@dataclass(frozen=True)
class SpaceSpec:
    name: str
    genotype: SpaceDef  # the torch-free parser (app.genotypes)
    # Fields of ``NetworkOptions`` the space's builder takes, with the value an unset one means.
    defaults: dict[str, Any]
    top_modules: tuple[str, ...]  # top-level module names of the built network
    cell_count: Callable[[NetworkOptions], int]  # the network has cells.0 .. cells.<count-1>
    unfreeze_rule: Callable[[NetworkOptions], list[str]]  # FEAR stage-2 default
    unfreeze_rule_text: str  # the rule in words, for the catalogue and docs
    min_input_for_auxiliary: int | None = None  # None = no auxiliary head in this space

    @property
    def options(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    def network_options(self) -> dict[str, dict[str, Any]]:
        """The options the space takes: description, default and limits (the catalogue entry)."""
        schema = NetworkOptions.model_json_schema()["properties"]
        described: dict[str, dict[str, Any]] = {}
        for key, default in self.defaults.items():
            entry = {k: v for k, v in schema[key].items() if k in ("description", "minimum", "maximum")}
            described[key] = {**entry, "default": default}
        if self.min_input_for_auxiliary is not None:
            described["auxiliary_weight"] = {
                **{k: v for k, v in schema["auxiliary_weight"].items() if k != "title"},
                "default": NetworkOptions.model_fields["auxiliary_weight"].default,
            }
        return described

    def check(self, network: NetworkOptions, input_size: int) -> tuple[str, str] | None:
        """(option, message naming the fix) for an option that does not apply, else None."""
        for key, value in network.model_dump().items():
            if key in self.defaults or key in TRAINING_ONLY_OPTIONS or value in _UNSET:
                continue
            allowed = ", ".join(self.defaults) or "none"
            return key, f"network.{key} does not apply to {self.name} (its options: {allowed}); remove it"
        if network.auxiliary and self.min_input_for_auxiliary and input_size < self.min_input_for_auxiliary:
            return "auxiliary", (
                f"the auxiliary head needs {self.min_input_for_auxiliary}x{self.min_input_for_auxiliary} "
                "inputs; set network.auxiliary false"
            )
        return None

    def builder_options(self, network: NetworkOptions) -> dict[str, Any]:
        """The builder's keyword options: the applicable knobs that are set (unset = the default)."""
        self._reject_foreign(network)
        values = network.model_dump()
        return {key: values[key] for key in self.defaults if values[key] is not None}

    def resolved(self, network: NetworkOptions) -> NetworkOptions:
        """``network`` with every unset applicable option replaced by the space default."""
        updates = {k: v for k, v in self.defaults.items() if getattr(network, k) is None}
        return network.model_copy(update=updates)

    def module_names(self, network: NetworkOptions) -> list[str]:
        top = list(self.top_modules)
        if network.auxiliary and self.min_input_for_auxiliary is not None:
            top.append("auxiliary_head")
        return top + [f"cells.{i}" for i in range(self.cell_count(self.resolved(network)))]

    def default_unfreeze(self, network: NetworkOptions) -> list[str]:
        return self.unfreeze_rule(self.resolved(network))

    def _reject_foreign(self, network: NetworkOptions) -> None:
        problem = self.check(network, input_size=10**6)
        if problem is not None:
            raise ValueError(problem[1])
