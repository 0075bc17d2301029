"""K NB201 topology networks trained as one module, so a step's kernel count stops growing with K.

On a large GPU an NB201-sized step is launch-bound: ~1.3–1.5k small kernels per network. Stacking K
networks of one skeleton (same C, N and classes; any cells) along the channel axis makes each layer of
the K networks one BatchNorm over K·C channels, one ReLU, one pooling and (``grouped=True``) one grouped
convolution, so a step launches about as many kernels as one network does. Per-network state stays
apart by construction: network k owns channels ``[k·C, (k+1)·C)`` of every activation, convolutions
never mix blocks, BatchNorm is per channel, each network has its own classifier head, its own loss
(the objective is their sum, whose gradient is exactly 1 for each) and its own gradient clip
(``clip_grad_norm_``). An edge whose op differs across the K cells runs each distinct op once on the
networks using it (one gather, then back to network order): at most five ops per edge, whatever K is.

Two modes:
- ``grouped=False`` (default, exact): each network keeps its own convolution kernels and everything
  else is stacked. On CPU training the stack then gives bitwise the weights, BN statistics and epoch
  accuracies of training each network alone with the same seed (``tests/test_stacked.py``).
- ``grouped=True`` (the GPU path): grouped convolutions. Same maths; on CPU a grouped convolution's
  gradients are not bitwise the ungrouped one's for some shapes (1x1, some strided 3x3), so this mode
  agrees to ~1e-5 rather than bitwise (tested), and its speed is for the device check to measure.

Networks whose cell has ``skip_connect`` on edge 0→1 stack only with each other (``stack_key``).
``copy_into`` gives network k back as an ordinary ``CellNetwork`` at any point: an epoch-end snapshot
of a network that is finished while the others go on.

Hand-written because no library stacks heterogeneous cells: ``torch.func.stack_module_state`` with
vmap needs identical module structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from app.genotypes import nb201 as nb201_genotype
from worker.spaces.nb201 import CellNetwork, TopologyCell, run_cell
from worker.spaces.ops import ResidualReduction, Zero


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient. ``cat``'s backward gives each part a
    strided slice, and BatchNorm's backward sums a strided gradient in another order than a
    contiguous one: the standalone op always sees a contiguous gradient."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def _contiguous_grad(x: torch.Tensor) -> torch.Tensor:
    return _ContiguousGrad.apply(x)  # type: ignore[no-any-return]


class StackedConv(nn.Module):
    """A bias-free convolution of ``members`` networks; the weight has a grouped conv's layout,
    ``[members·c_out, c_in, k, k]``. ``shared_input``: every member reads the whole input (the stem
    on the images) instead of its own channel block.

    ``grouped``: one grouped convolution (the fast path: the kernel count stops growing with K).
    Otherwise one standalone convolution per member: on CPU a grouped convolution gives the same
    outputs but, for some shapes (1x1, some strided 3x3), not bitwise the same gradients as the
    ungrouped one, so exact mode keeps each network's own conv kernels and stacks everything else.
    """

    def __init__(
        self,
        members: int,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        *,
        grouped: bool,
        shared_input: bool = False,
    ) -> None:
        super().__init__()
        self.members, self.c_in, self.stride, self.padding = members, c_in, stride, padding
        self.grouped, self.shared_input = grouped, shared_input
        self.weight = nn.Parameter(torch.empty(members * c_out, c_in, kernel, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grouped:
            groups = 1 if self.shared_input else self.members
            return F.conv2d(x, self.weight, stride=self.stride, padding=self.padding, groups=groups)
        blocks = [x] * self.members if self.shared_input else [b.contiguous() for b in x.split(self.c_in, 1)]
        weights = self.weight.chunk(self.members, dim=0)
        outs = [
            _contiguous_grad(F.conv2d(b, w, stride=self.stride, padding=self.padding))
            for b, w in zip(blocks, weights, strict=True)
        ]
        return torch.cat(outs, dim=1)


def _relu_conv_bn(
    members: int, c_in: int, c_out: int, kernel: int, stride: int, padding: int, grouped: bool
) -> nn.Sequential:
    """ReLU → conv → BN over ``members`` channel blocks, named like ``ReLUConvBN`` (0, 1, 2)."""
    conv = StackedConv(members, c_in, c_out, kernel, stride, padding, grouped=grouped)
    return nn.Sequential(nn.ReLU(inplace=False), conv, nn.BatchNorm2d(members * c_out))


def _stacked_op(name: str, members: int, channels: int, grouped: bool) -> nn.Module:
    """The op ``name`` of an NB201 cell edge (width kept) applied to ``members`` networks at once."""
    if name == "none":
        return Zero(members * channels, members * channels, 1)
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return _relu_conv_bn(members, channels, channels, 1, 1, 0, grouped)
    if name == "nor_conv_3x3":
        return _relu_conv_bn(members, channels, channels, 3, 1, 1, grouped)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown nb201 op {name!r}")


def _channel_index(networks: Sequence[int], channels: int) -> torch.Tensor:
    return torch.cat([torch.arange(k * channels, (k + 1) * channels) for k in networks])


class StackedEdge(nn.Module):
    """One cell edge of K networks: each distinct op once, on the networks whose cell uses it."""

    order: torch.Tensor  # channels grouped by op (buffers, set when the ops differ)
    back: torch.Tensor  # the inverse permutation: back to network order

    def __init__(self, op_names: Sequence[str], channels: int, grouped: bool) -> None:
        super().__init__()
        self.op_names = tuple(op_names)
        self.users: dict[str, tuple[int, ...]] = {}
        for k, name in enumerate(self.op_names):
            self.users.setdefault(name, ())
            self.users[name] += (k,)
        self.ops = nn.ModuleDict(
            {name: _stacked_op(name, len(ks), channels, grouped) for name, ks in self.users.items()}
        )
        for name, ks in self.users.items():
            self.register_buffer(f"users_{name}", torch.tensor(ks), persistent=False)
        self.whole = len(self.users) == 1  # one op for every network: no gather, no reorder
        self.sizes = [len(ks) * channels for ks in self.users.values()]
        if not self.whole:
            order = torch.cat([_channel_index(ks, channels) for ks in self.users.values()])
            self.register_buffer("order", order, persistent=False)
            self.register_buffer("back", torch.argsort(order), persistent=False)

    def users_of(self, op: str) -> torch.Tensor:
        """The networks (stack positions) whose cell has ``op`` on this edge, on the module's device."""
        return self.get_buffer(f"users_{op}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.whole:
            return self.ops[self.op_names[0]](x)  # type: ignore[no-any-return]
        # One gather (not one per op): the edge then hands its input a single gradient, so the input's
        # gradients from its edges add up in the standalone cell's order, bit for bit.
        grouped = x.index_select(1, self.order).split(self.sizes, dim=1)
        parts = [_contiguous_grad(op(part)) for op, part in zip(self.ops.values(), grouped, strict=True)]
        return torch.cat(parts, dim=1).index_select(1, self.back)


class StackedCell(nn.Module):
    """K ``TopologyCell`` s (same width, any ops); node sums in the reference's edge order."""

    def __init__(self, cells: Sequence[TopologyCell], channels: int, grouped: bool) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            StackedEdge([cell.ops[e] for cell in cells], channels, grouped)
            for e in range(len(nb201_genotype.EDGES))
        )
        self._plan = cells[0]._plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_cell(self.edges, self._plan, x)


class StackedReduction(nn.Module):
    """K ``ResidualReduction`` blocks, named like one."""

    def __init__(self, members: int, c_in: int, c_out: int, grouped: bool) -> None:
        super().__init__()
        self.conv_a = _relu_conv_bn(members, c_in, c_out, 3, 2, 1, grouped)
        self.conv_b = _relu_conv_bn(members, c_out, c_out, 3, 1, 1, grouped)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            StackedConv(members, c_in, c_out, 1, grouped=grouped),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class StackedClassifier(nn.Module):
    """K linear heads: ``[B, K·C]`` features → ``[K, B, classes]`` logits."""

    def __init__(self, members: int, features: int, classes: int) -> None:
        super().__init__()
        self.members = members
        self.weight = nn.Parameter(torch.empty(members, classes, features))
        self.bias = nn.Parameter(torch.empty(members, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One small matmul per network: a batched matmul is bitwise the same forward, but its weight
        # gradient sums in another order than the standalone head's.
        per_network = x.view(x.shape[0], self.members, -1).transpose(0, 1).contiguous()
        return torch.stack(
            [F.linear(per_network[k], self.weight[k], self.bias[k]) for k in range(self.members)]
        )


@dataclass(frozen=True)
class _Slot:
    """Where a tensor of network k lives in the stack: ``stacked.view(members, *shape)[position]``;
    ``position`` None for a counter all networks share (BN's ``num_batches_tracked``)."""

    name: str
    members: int
    position: int | None


class StackedNB201(nn.Module):
    """K NB201 ``CellNetwork`` s of one skeleton as one module; ``forward`` gives ``[K, B, classes]``.

    Built from the networks themselves (weights and BN buffers copied), so each starts exactly where a
    standalone run with the same seed starts.
    """

    def __init__(self, networks: Sequence[CellNetwork], *, grouped: bool = False) -> None:
        super().__init__()
        if not networks:
            raise ValueError("stack at least one network")
        first = networks[0]
        skeleton = _skeleton(first)
        if any(_skeleton(net) != skeleton for net in networks[1:]):
            raise ValueError("stacked networks need one skeleton: the same C, N and number of classes")
        if len({_aliases_input(net) for net in networks}) > 1:
            raise ValueError(
                "stacked networks must agree on whether edge 0->1 is skip_connect (group them with "
                "stack_key): a cell whose node 1 is its input sums its input's gradient in another order"
            )
        k = self.stack_size = len(networks)
        self.grouped = grouped
        stem_width, cell_widths, classes = skeleton
        self.stem = nn.Sequential(
            StackedConv(k, 3, stem_width, 3, 1, 1, grouped=grouped, shared_input=True),
            nn.BatchNorm2d(k * stem_width),
        )
        cells: list[nn.Module] = []
        c_prev = stem_width
        for i, (kind, width) in enumerate(cell_widths):
            if kind == "reduction":
                cells.append(StackedReduction(k, c_prev, width, grouped))
            else:
                cells.append(StackedCell([net.cells[i] for net in networks], width, grouped))  # type: ignore[misc]
            c_prev = width
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(k * c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = StackedClassifier(k, c_prev, classes)
        self._slots = [self._slots_of(index, net) for index, net in enumerate(networks)]
        # Each network's parameters in its own ``parameters()`` order: the order its clip reduces in.
        self._param_slots = [
            [slots[name] for name, _ in net.named_parameters()]
            for slots, net in zip(self._slots, networks, strict=True)
        ]
        for index, net in enumerate(networks):
            self.load_network(index, net)

    def _edge_of(self, name: str) -> StackedEdge | None:
        """The cell edge a reference tensor name (``cells.i.edges.e....``) belongs to, if any."""
        parts = name.split(".")
        if parts[0] != "cells":
            return None
        cell = self.cells[int(parts[1])]
        return cast(StackedEdge, cell.edges[int(parts[3])]) if isinstance(cell, StackedCell) else None

    def _slots_of(self, index: int, net: CellNetwork) -> dict[str, _Slot]:
        slots: dict[str, _Slot] = {}
        for name in net.state_dict():
            edge = self._edge_of(name)
            if edge is None:
                stacked, members, position = name, self.stack_size, index
            else:
                op = edge.op_names[index]
                parts = name.split(".")
                stacked = ".".join([*parts[:4], "ops", op, *parts[4:]])
                members, position = len(edge.users[op]), edge.users[op].index(index)
            shared = name.endswith("num_batches_tracked")
            slots[name] = _Slot(stacked, members, None if shared else position)
        return slots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))

    # --- per-network views ---------------------------------------------------------------------
    def _tensor(self, slot: _Slot, shape: torch.Size) -> torch.Tensor:
        param = dict(self.named_parameters()).get(slot.name)
        stacked: torch.Tensor = param if param is not None else self.get_buffer(slot.name)
        if slot.position is None:
            return stacked
        return stacked.view(slot.members, *shape)[slot.position]

    @torch.no_grad()
    def load_network(self, index: int, net: CellNetwork) -> None:
        """Put ``net``'s weights and BN buffers into slot ``index`` of the stack."""
        for name, tensor in net.state_dict().items():
            self._tensor(self._slots[index][name], tensor.shape).copy_(tensor)

    @torch.no_grad()
    def copy_into(self, index: int, net: CellNetwork) -> CellNetwork:
        """Write network ``index``'s current state into ``net`` (its own architecture) and return it:
        an epoch-end snapshot of one network while the others go on."""
        state = {
            name: self._tensor(self._slots[index][name], tensor.shape).clone()
            for name, tensor in net.state_dict().items()
        }
        net.load_state_dict(state)
        return net

    def losses(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each network's mean cross-entropy, ``[K]`` (computed apart: bitwise each network's own)."""
        return torch.stack([F.cross_entropy(logits[k], target) for k in range(self.stack_size)])

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``nn.utils.clip_grad_norm_`` for each network on its own gradients; returns the K norms.

        One norm per stacked tensor and member, then per network the norm of its tensors' norms in
        its own parameter order (what the standalone clip reduces), then one scale per member.
        """
        params = dict(self.named_parameters())
        member_norms = {
            name: torch.linalg.vector_norm(p.grad.view(self._members(name), -1), dim=1)
            for name, p in params.items()
            if p.grad is not None
        }
        totals = []
        for slots in self._param_slots:
            norms = [member_norms[s.name][s.position] for s in slots if s.name in member_norms]
            totals.append(torch.linalg.vector_norm(torch.stack(norms)))
        total = torch.stack(totals)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for name, p in params.items():
            if p.grad is not None:
                users = self._users(name)
                scale = coef if users is None else coef.index_select(0, users)
                p.grad.view(len(scale), -1).mul_(scale.unsqueeze(1))
        return total

    def _members(self, name: str) -> int:
        users = self._users(name)
        return self.stack_size if users is None else len(users)

    def _users(self, name: str) -> torch.Tensor | None:
        """The networks (in stacking order) sharing stacked parameter ``name``; None: all K."""
        edge = self._edge_of(name)
        return None if edge is None else edge.users_of(name.split(".")[5])


def _skeleton(net: CellNetwork) -> tuple[int, tuple[tuple[str, int], ...], int]:
    """What must match for networks to stack: stem width, each cell's kind and width, classes."""
    stem_width = cast(nn.Conv2d, net.stem[0]).out_channels
    width = stem_width
    kinds = []
    for cell in net.cells:
        if isinstance(cell, ResidualReduction):
            width = cast(nn.Conv2d, cell.conv_a[1]).out_channels
            kinds.append(("reduction", width))
        else:
            kinds.append(("cell", width))
    return stem_width, tuple(kinds), net.classifier.out_features


def _aliases_input(net: CellNetwork) -> bool:
    return next(c for c in net.cells if isinstance(c, TopologyCell)).ops[0] == "skip_connect"


def stack_key(ops: Sequence[str]) -> bool:
    """Cells that may share a stack have equal keys (given one skeleton): with ``skip_connect`` on
    edge 0→1 node 1 *is* the cell input, so the input's gradient is summed over node 1's consumers
    and the input's own in one pass; a stack keeps that order only if every member does the same."""
    return ops[0] == "skip_connect"
