"""grad_norm: the sum over Conv/Linear layers of the Frobenius norm of dL/dW."""

from __future__ import annotations

import torch
from torch import nn

from worker.methods.zero_cost.common import Batch, LossGradients, Score, loss_gradients, total
from worker.methods.zero_cost.registry import implements


def grad_norm_from(grads: LossGradients) -> Score:
    return Score(total([torch.linalg.vector_norm(g) for g in grads.weight_grads]))


@implements("grad_norm", from_gradients=grad_norm_from)
def grad_norm(model: nn.Module, batch: Batch) -> Score:
    return grad_norm_from(loss_gradients(model, batch))
