"""Name → measure: the function and what it needs from the runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from app.catalog.zero_cost import DEFAULT_BATCH_SIZE
from worker.methods.zero_cost.common import Batch, LossGradients, Score
from worker.methods.zero_cost.fisher import fisher, fisher_from
from worker.methods.zero_cost.flops import flops
from worker.methods.zero_cost.grad_norm import grad_norm, grad_norm_from
from worker.methods.zero_cost.grasp import grasp
from worker.methods.zero_cost.jacob_cov import jacob_cov
from worker.methods.zero_cost.naswot import naswot
from worker.methods.zero_cost.params import params
from worker.methods.zero_cost.plain import plain, plain_from
from worker.methods.zero_cost.snip import snip, snip_from
from worker.methods.zero_cost.synflow import synflow, synflow_bn

# "batch": a real minibatch of config["batch_size"] images; "shape": only the image shape is read
# (synflow feeds one all-ones image, flops one image); "none": no data at all.
InputKind = Literal["batch", "shape", "none"]


@dataclass(frozen=True)
class Measure:
    name: str
    compute: Callable[[nn.Module, Batch], Score]
    input: InputKind
    needs_labels: bool
    removes_batchnorm: bool  # the measure scores a copy of the network with BatchNorm replaced by identity
    default_batch_size: int | None  # None where no batch is read
    # Set for measures that only read the loss gradients of the fresh network (grad_norm, snip,
    # plain, fisher): the runner computes those once per batch and hands them to each.
    from_gradients: Callable[[LossGradients], Score] | None = None

    def batch_size(self, config: dict) -> int | None:
        if self.input != "batch":
            return None
        return int(config.get("batch_size") or self.default_batch_size)


def _batch_measure(
    name: str,
    compute: Callable[[nn.Module, Batch], Score],
    needs_labels: bool,
    from_gradients: Callable[[LossGradients], Score] | None = None,
) -> Measure:
    return Measure(name, compute, "batch", needs_labels, False, DEFAULT_BATCH_SIZE[name], from_gradients)


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        _batch_measure("grad_norm", grad_norm, needs_labels=True, from_gradients=grad_norm_from),
        _batch_measure("snip", snip, needs_labels=True, from_gradients=snip_from),
        _batch_measure("grasp", grasp, needs_labels=True),
        _batch_measure("fisher", fisher, needs_labels=True, from_gradients=fisher_from),
        _batch_measure("plain", plain, needs_labels=True, from_gradients=plain_from),
        _batch_measure("jacob_cov", jacob_cov, needs_labels=False),
        _batch_measure("naswot", naswot, needs_labels=False),
        Measure("synflow", synflow, "shape", False, True, None),
        Measure("synflow_bn", synflow_bn, "shape", False, False, None),
        Measure("params", params, "none", False, False, None),
        Measure("flops", flops, "shape", False, False, None),
    )
}
