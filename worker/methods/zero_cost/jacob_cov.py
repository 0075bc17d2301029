"""jacob_cov: how differently the network responds to the images of one batch.

J = d(Σ logits)/dx, one flattened row per image; C = correlation matrix of the rows (float64);
score = -Σ_i [log(v_i + k) + 1/(v_i + k)] over the eigenvalues v of C, k = 1e-5. Labels unused.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from worker.methods.zero_cost.common import Batch, Score, logits_of
from worker.methods.zero_cost.registry import implements

EPSILON = 1e-5
NO_PATH = "no path from input to output: constant Jacobian (correlation undefined)"


def input_jacobian(model: nn.Module, images: Tensor) -> Tensor:
    model.train()
    x = images.detach().requires_grad_(True)
    logits = logits_of(model(x))
    (jacobian,) = torch.autograd.grad(logits.sum(), x, allow_unused=True)
    if jacobian is None:  # the output never touched the input
        jacobian = torch.zeros_like(x)
    return jacobian.reshape(x.shape[0], -1)


def correlation_score(jacobian: Tensor) -> Score:
    rows = jacobian.double()
    constant = (rows == rows[:, :1]).all(dim=1)
    n_constant = int(constant.sum())
    if n_constant == rows.shape[0]:
        return Score(math.nan, NO_PATH, {"constant_rows": n_constant})
    if n_constant:
        undefined = (
            f"{n_constant} of {rows.shape[0]} Jacobian rows are constant: their correlation is undefined"
        )
        return Score(math.nan, undefined, {"constant_rows": n_constant})
    eigenvalues = torch.linalg.eigvalsh(torch.corrcoef(rows))
    shifted = eigenvalues + EPSILON
    value = float(-(torch.log(shifted) + 1.0 / shifted).sum())
    reason: str | None = None
    if not math.isfinite(value):
        reason = f"eigenvalue {float(eigenvalues.min()):.3g} of the correlation matrix is below -{EPSILON}"
    return Score(value, reason, {"min_eigenvalue": float(eigenvalues.min())})


@implements("jacob_cov")
def jacob_cov(model: nn.Module, batch: Batch) -> Score:
    return correlation_score(input_jacobian(model, batch[0]))
