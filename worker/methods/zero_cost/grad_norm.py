"""grad_norm: the sum over Conv/Linear layers of the Frobenius norm of dL/dW."""

from __future__ import annotations

import torch
from torch import nn

from worker.methods.zero_cost.common import Batch, Score, loss_weight_grads, total


def grad_norm(model: nn.Module, batch: Batch) -> Score:
    _, grads = loss_weight_grads(model, batch)
    return Score(total([torch.linalg.vector_norm(g) for g in grads]))
