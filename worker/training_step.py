"""The training step as a CUDA graph: ``train`` uses it when the config says ``cuda_graph``.

An NB201-sized step is launch-bound on a large GPU: ~1.3–1.5k kernels whose launch costs more than
their maths. Captured once per batch shape and replayed, the whole step (forward, backward, clip,
optimiser) is one launch. What capture needs, and this class provides:

- static buffers: each batch is copied into the shape's own input tensors, and the loss and hit
  count come back in static output tensors (read them before the next step);
- the learning rate as a device tensor the schedule fills before each step (a Python float would be
  baked into the graph), with fused SGD, the optimiser that takes a tensor lr without a host sync;
- gradients kept allocated (``zero_grad(set_to_none=False)``) so their addresses stay put;
- ``warmup_steps`` real, eager steps per shape before capturing it, on a side stream (lazy library
  initialisation, optimiser state): they are steps of the run, not extra ones, so capturing changes
  no result — eager and replayed steps run the same kernels.

Off CUDA there is nothing to capture: the same step runs eagerly with the default optimiser and a
float lr, bitwise the default loop's run (tested). On CUDA fused SGD does not round exactly like the
default (foreach) optimiser, which is why ``cuda_graph`` is part of a result's identity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.catalog.base import SgdOptions


@dataclass
class _Buffers:
    x: torch.Tensor
    y: torch.Tensor
    loss: torch.Tensor  # mean cross-entropy of the step's batch (float32)
    hits: torch.Tensor  # correct top-1 predictions of the step's batch (int64)


class StaticStep:
    """One training step over static buffers; on CUDA captured per input shape and replayed."""

    warmup_steps = 3

    def __init__(
        self,
        model: nn.Module,
        params: list[nn.Parameter],
        sgd: SgdOptions,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.model = model
        self.params = params
        self.grad_clip = sgd.grad_clip
        self.device = device
        self.autocast = autocast
        self.capture = device.type == "cuda"
        self.lr = torch.tensor(sgd.lr, dtype=torch.float32, device=device)
        # Fused SGD takes the lr tensor without a host sync (capturable); off CUDA the default
        # optimiser with a float lr keeps the run bitwise the default loop's.
        self.optimizer = torch.optim.SGD(
            params,
            lr=self.lr if self.capture else sgd.lr,
            momentum=sgd.momentum,
            nesterov=sgd.nesterov and sgd.momentum > 0,
            weight_decay=sgd.weight_decay,
            fused=True if self.capture else None,
        )
        self.buffers: dict[tuple[int, ...], _Buffers] = {}
        self.eager_steps: dict[tuple[int, ...], int] = {}
        self.graphs: dict[tuple[int, ...], torch.cuda.CUDAGraph] = {}
        self.pool: Any = None  # one memory pool for every shape's graph
        self.captured_shapes = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on ``(x, y)`` at ``lr``; returns the (static) loss and hit-count tensors."""
        key = tuple(x.shape)
        buffers = self.buffers.get(key)
        if buffers is None:
            buffers = self.buffers[key] = _Buffers(
                torch.empty_like(x),
                torch.empty_like(y),
                torch.zeros((), dtype=torch.float32, device=self.device),
                torch.zeros((), dtype=torch.long, device=self.device),
            )
        self.lr.fill_(lr)
        if not self.capture:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        buffers.x.copy_(x)
        buffers.y.copy_(y)
        graph = self.graphs.get(key)
        if graph is None and self.capture and self.eager_steps.get(key, 0) >= self.warmup_steps:
            graph = self._capture(key, buffers)
        if graph is not None:
            graph.replay()
        elif self.capture:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._step(buffers)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.eager_steps[key] = self.eager_steps.get(key, 0) + 1
        else:
            self._step(buffers)
        return buffers.loss, buffers.hits

    def _capture(self, key: tuple[int, ...], buffers: _Buffers) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self._step(buffers)
        self.pool = graph.pool()
        self.graphs[key] = graph
        self.captured_shapes += 1
        return graph

    def _step(self, b: _Buffers) -> None:
        self.optimizer.zero_grad(set_to_none=False)
        with self.autocast():
            logits = self.model(b.x).float()
            loss = F.cross_entropy(logits, b.y)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        b.loss.copy_(loss.detach())
        b.hits.copy_((logits.detach().argmax(dim=1) == b.y).sum())
