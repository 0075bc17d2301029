"""Several training evaluations trained as one stacked network (``settings.stack_size`` > 1).

A large GPU runs an NB201-sized step launch-bound: K processes on one card still launch K times the
kernels. ``StackedNB201`` trains K networks of one skeleton as one module, so a step launches about
as many kernels as one network does. This module is the worker's side of it:

- ``co_claim``: next to a claimed training evaluation, claim up to ``stack_size - 1`` queued ones
  that differ from it only in the architecture (same method, config hash, dataset, seed, scope,
  space, device class) and that may share its stack (``stack_key``). Their own messages arrive
  later and claim nothing, as any duplicate delivery.
- ``plan``: the claimed training evaluations in stacks of at most ``stack_size`` (the rest alone).
- ``run_stack``: one stack through the shared loop, then per network what the method does alone.
  ``shortreg``/``full``: every network trains its E epochs; the score, or the test pass of the
  network taken out of the stack. ``fear``: stage 1 in the stack; a network reaching the threshold
  at an epoch end is snapshotted there with the data generator's state, and its stage 2 runs alone
  from that snapshot (the stack trains on until every network met the threshold or the epoch cap).

With ``stack_mode`` ``exact`` (the default on CPU) every score, epoch log and stage-1 length is
bitwise the network's standalone run (``tests/test_stacking.py``), so stacking is an execution
detail, not part of an evaluation's identity. Each result records it in ``info.stack``; its cost is
its share of the stack's wall time (each epoch split among the networks still training in it).

Not stacked (run alone): other spaces, ``cuda_graph``, mixup, FEAR's sliding-window threshold check,
and FEAR in a batch with a ratio-to-fastest cap (a shared clock cannot time one network's stage 1).
A stack that fails to build or train falls back to running its evaluations one by one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from app.catalog.methods import all_methods
from app.genotypes import nb201 as nb201_genotype
from app.settings import get_settings
from worker.methods import fear, full, shortreg
from worker.methods.base import EvalRequest, LostOwnership, MethodResult
from worker.runtime import Claim, ServiceContext
from worker.spaces.nb201 import CellNetwork
from worker.spaces.nb201_stacked import StackedNB201, stack_key
from worker.training import (
    Callbacks,
    Clock,
    EpochStats,
    TrainOptions,
    build_network,
    make_generator,
    prepare_model,
    train,
)

log = logging.getLogger(__name__)

STACKABLE_METHODS = ("fear", "shortreg", "full")
STACKABLE_SPACES = ("nb201",)

Finish = Callable[[Claim, MethodResult], None]
Fail = Callable[[Claim, BaseException], None]
RunAlone = Callable[[Claim], None]


def stackable(c: Claim) -> bool:
    """Whether ``c`` may train in a stack at all (what its config asks is supported by one)."""
    if c.method not in STACKABLE_METHODS or c.space not in STACKABLE_SPACES:
        return False
    info = all_methods().get(c.method)
    if info is None:
        return False
    try:
        config = info.config_model.model_validate(c.config)
    except ValueError:
        return False  # run alone: the method reports the bad config as it always does
    if getattr(config, "cuda_graph", False) or getattr(config, "mixup_alpha", 0.0) > 0:
        return False
    return getattr(config, "threshold_check_steps", None) is None


def group_key(c: Claim) -> tuple[Any, ...]:
    """Claims with equal keys may share a stack: one method, config, dataset, seed and scope (hence
    one network skeleton and one data order), and one ``stack_key`` of the cell."""
    ops = nb201_genotype.parse_ops(c.genotype)
    return (c.method, _frozen(c.config), c.dataset, c.seed, c.scope, stack_key(ops))


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def plan(claims: Sequence[Claim], size: int) -> list[list[Claim]]:
    """Training claims in run order: stacks of at most ``size`` (claim order kept within a key),
    everything that cannot stack as a group of one."""
    if size <= 1:
        return [[c] for c in claims]
    groups: list[list[Claim]] = []
    open_group: dict[tuple[Any, ...], list[Claim]] = {}
    for c in claims:
        if not stackable(c):
            groups.append([c])
            continue
        key = group_key(c)
        current = open_group.get(key)
        if current is None or len(current) >= size:
            current = open_group[key] = []
            groups.append(current)
        current.append(c)
    return groups


def co_claim(claims: Sequence[Claim], size: int, device: str) -> list[Claim]:
    """Queued evaluations that can join the stacks of ``claims``, claimed now for this worker."""
    from app.db import session_scope
    from app.lifecycle import queued_companions
    from worker.runtime import claim

    if size <= 1:
        return []
    have: dict[tuple[Any, ...], int] = {}
    for c in claims:
        if stackable(c):
            key = group_key(c)
            have[key] = have.get(key, 0) + 1
    extra: list[Claim] = []
    seen = {c.evaluation_id for c in claims}
    for c in claims:
        if not stackable(c):
            continue
        key = group_key(c)
        missing = -have[key] % size  # fill the key's last stack up to ``size``
        if missing == 0:
            continue
        try:
            with session_scope() as session:
                # Read more than needed: some candidates have the other stack key.
                candidates = queued_companions(session, c.evaluation_id, 4 * missing)
            wanted = [
                eid
                for eid, canonical in candidates
                if eid not in seen and stack_key(nb201_genotype.parse_ops(canonical)) == key[-1]
            ][:missing]
            got = claim(wanted, device) if wanted else []
        except Exception:  # an optimisation: what is claimed so far runs, the rest waits queued
            log.warning("could not claim stack companions of evaluation %s", c.evaluation_id, exc_info=True)
            break
        extra += got
        seen.update(g.evaluation_id for g in got)
        have[key] += len(got)
    return extra


def grouped_mode(device: torch.device) -> bool:
    mode = get_settings().stack_mode
    return mode == "grouped" or (mode == "auto" and device.type == "cuda")


@dataclass
class _Member:
    """One network of a stack: its evaluation, context and, once finished, its snapshot."""

    claim: Claim
    ctx: ServiceContext
    net: CellNetwork
    accuracies: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    cost_s: float = 0.0  # its share of the stack's training time so far
    prepared: fear.Prepared | None = None  # FEAR: its config, unfreeze set and info
    lost: bool = False
    met_at: int | None = None  # FEAR: the epoch it reached the threshold
    generator_state: torch.Tensor | None = None

    @property
    def training(self) -> bool:
        return not self.lost and self.met_at is None


class _StackWatch(Callbacks):
    """Per-network bookkeeping at epoch ends: progress, cost shares, FEAR's threshold snapshots."""

    def __init__(
        self,
        stack: StackedNB201,
        members: list[_Member],
        generator: torch.Generator,
        phase: str,
        epochs: int,
        threshold: float | None,
    ) -> None:
        self.stack, self.members, self.generator = stack, members, generator
        self.phase, self.epochs, self.threshold = phase, epochs, threshold

    def on_epoch(self, stats: EpochStats) -> bool:
        active = [m for m in self.members if m.training]
        for k, member in enumerate(self.members):
            if not member.training:
                continue
            acc, loss = stats.per_network_acc[k], stats.per_network_loss[k]
            member.accuracies.append(acc)
            member.losses.append(loss)
            member.cost_s += stats.seconds / len(active)
            try:
                member.ctx.progress(
                    phase=self.phase,
                    epoch=stats.epoch,
                    epochs=self.epochs,
                    train_acc=acc,
                    stacked_with=len(self.members),
                )
            except LostOwnership:
                member.lost = True
                continue
            if self.threshold is not None and acc >= self.threshold:
                member.met_at = stats.epoch
                self.stack.copy_into(k, member.net)
                member.generator_state = self.generator.get_state()
        return not any(m.training for m in self.members)


def run_stack(
    claims: Sequence[Claim],
    contexts: Sequence[ServiceContext],
    device: torch.device,
    finish: Finish,
    fail: Fail,
    run_alone: RunAlone,
    *,
    clock: Clock = time.perf_counter,
) -> None:
    """Train ``claims`` (one ``plan`` group) as one stack and finish each; falls back to
    ``run_alone`` for each if the stack cannot run (``finish``/``fail`` store one result)."""
    method = claims[0].method
    if len(claims) == 1 or (method == "fear" and contexts[0].has_cap()):
        for c in claims:
            run_alone(c)
        return
    try:
        members, stack, data, config = _build(claims, contexts, device)
    except Exception as exc:
        if not isinstance(exc, LostOwnership):  # else: the first one was cancelled; the rest go on
            ids = [c.evaluation_id for c in claims]
            log.exception("could not stack evaluations %s; running them one by one", ids)
        for c in claims:
            run_alone(c)
        return
    generator = make_generator(claims[0].seed)
    try:
        if method == "fear":
            _fear(members, stack, data, cast(Any, config), generator, finish, fail, clock)
        else:
            _regular(members, stack, data, cast(Any, config), generator, finish, fail, clock)
    except Exception:
        ids = [c.evaluation_id for c in claims]
        log.exception("stacked training of %s failed; running them one by one", ids)
        for m in members:
            if not m.lost:
                run_alone(m.claim)


def _build(
    claims: Sequence[Claim], contexts: Sequence[ServiceContext], device: torch.device
) -> tuple[list[_Member], StackedNB201, Any, Any]:
    info = all_methods()[claims[0].method]
    config = cast(
        "fear.FearConfig | shortreg.ShortregConfig", info.config_model.model_validate(claims[0].config)
    )
    data = contexts[0].dataset(claims[0].dataset, config.data.model_dump(mode="json"))
    members = []
    for c, ctx in zip(claims, contexts, strict=True):
        if c.method == "fear":
            # Built from the seed as alone, and a bad unfreeze set fails before any training.
            prepared = fear.prepare(EvalRequest.of(c), ctx, data)
            members.append(_Member(c, ctx, cast(CellNetwork, prepared.model), prepared=prepared))
        else:
            net = build_network(c.space, c.genotype, config.network, data, c.seed, device, config.precision)
            members.append(_Member(c, ctx, cast(CellNetwork, net)))
    stack = StackedNB201([m.net for m in members], grouped=grouped_mode(device))
    return members, cast(StackedNB201, prepare_model(stack, device, config.precision)), data, config


def _stack_info(members: Sequence[_Member], index: int, stack: StackedNB201, wall_s: float) -> dict[str, Any]:
    return {
        "size": len(members),
        "position": index,
        "mode": "grouped" if stack.grouped else "exact",
        "wall_s": wall_s,
        "evaluations": [m.claim.evaluation_id for m in members],
    }


def _regular(
    members: list[_Member],
    stack: StackedNB201,
    data: Any,
    config: shortreg.ShortregConfig,
    generator: torch.Generator,
    finish: Finish,
    fail: Fail,
    clock: Clock,
) -> None:
    watch = _StackWatch(stack, members, generator, "train", config.epochs, threshold=None)
    result = train(stack, data, TrainOptions.of_stage(config.stage, config), generator, watch, clock=clock)
    for k, m in enumerate(members):
        if m.lost:
            continue
        try:
            info = shortreg.regular_info(m.accuracies, m.losses)
            info["stack"] = _stack_info(members, k, stack, result.seconds)
            if m.claim.method == "full":
                net = stack.copy_into(k, m.net)
                outcome = full.tested(net, data, cast(full.FullConfig, config), m.cost_s, info, clock)
            else:
                outcome = shortreg.scored(m.accuracies, m.cost_s, info)
        except Exception as exc:
            fail(m.claim, exc)
            continue
        finish(m.claim, outcome)


def _fear(
    members: list[_Member],
    stack: StackedNB201,
    data: Any,
    config: fear.FearConfig,
    generator: torch.Generator,
    finish: Finish,
    fail: Fail,
    clock: Clock,
) -> None:
    first = cast(fear.Prepared, members[0].prepared)
    options = first.stage1_options()
    warm_key = ("stack", len(members), members[0].claim.space, config.stage1_batch_size, config.precision)
    timings = fear.warm_once(warm_key, stack, first, clock)
    cap = config.max_stage1_epochs
    watch = _StackWatch(stack, members, generator, "stage1", cap, threshold=config.threshold)
    result = train(stack, data, options, generator, watch, clock=clock)
    steps_per_epoch = first.steps_per_epoch
    for k, m in enumerate(members):
        if m.lost:
            continue
        try:
            # ``m.net`` holds the snapshot of its threshold epoch (the stack wrote it there).
            prepared = cast(fear.Prepared, m.prepared)
            own = make_generator(m.claim.seed)
            if m.generator_state is not None:
                own.set_state(m.generator_state)
            epochs = m.met_at or len(m.accuracies)
            record = fear.Stage1Record(
                met=m.met_at is not None,
                rejected=False,
                seconds=m.cost_s,
                steps=epochs * steps_per_epoch if m.met_at is not None else result.steps,
                accuracies=m.accuracies,
                losses=m.losses,
            )
            prepared.info["stack"] = _stack_info(members, k, stack, result.seconds)
            # The stack's warm-up is recorded once, with its first network.
            outcome = fear.after_stage1(prepared, m.ctx, own, record, dict(timings) if k == 0 else {}, clock)
        except LostOwnership:
            continue
        except Exception as exc:
            fail(m.claim, exc)
            continue
        finish(m.claim, outcome)
