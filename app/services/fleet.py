"""The worker fleet as the API sees it: which queue a piece of work goes to (routing by device class),
what each worker advertises (its capabilities), and which live workers can run a routed batch.

Queues are named ``<settings.queue>.<class>``: ``gpu`` (work that needs a GPU: training at paper
scale), ``cpu`` (work pinned to CPUs) and ``any`` (zero-cost measures, tiny/cpu presets: whoever is
free). A GPU worker consumes ``gpu`` and ``any``, a CPU worker ``cpu`` and ``any``; a CPU worker
takes GPU work only when told to (``worker_device_classes`` or ``fastarchrank worker --queues``).
Torch-free: the API imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import WorkerSeen, utcnow
from app.settings import Settings

DeviceClass = Literal["gpu", "cpu", "any"]
DEVICE_CLASSES: tuple[DeviceClass, ...] = ("gpu", "cpu", "any")


def queue_name(settings: Settings, device_class: str | None) -> str:
    """The broker queue of a device class (``None``: rows written before routing existed → any)."""
    return f"{settings.queue}.{device_class or 'any'}"


def route(
    name: str, family: str, preset: str | None, pinned: DeviceClass | None, settings: Settings
) -> DeviceClass:
    """Where one method entry's evaluations go: the batch's pin if it has one; training at a GPU
    preset (``gpu_presets``) or with a large prior cost (``gpu_min_prior_cost_s``) → gpu; the rest
    → any."""
    from app.services.eta import prior_cost_s

    if pinned is not None:
        return pinned
    if family == "training" and (
        preset in settings.gpu_presets or prior_cost_s(name, family, preset) >= settings.gpu_min_prior_cost_s
    ):
        return "gpu"
    return "any"


def default_classes(is_cuda: bool) -> list[DeviceClass]:
    return ["gpu", "any"] if is_cuda else ["cpu", "any"]


def consumed_queues(settings: Settings, classes: Iterable[str]) -> list[str]:
    return [queue_name(settings, c) for c in classes]


def parse_classes(text: str) -> list[DeviceClass]:
    """``--queues gpu,cpu,any`` → the classes, validated (ValueError naming the bad one)."""
    out: list[DeviceClass] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part not in DEVICE_CLASSES:
            raise ValueError(f"unknown device class {part!r} in --queues; use gpu, cpu or any")
        out.append(part)  # type: ignore[arg-type]
    if not out:
        raise ValueError("--queues names no device class; use e.g. cpu,any")
    return list(dict.fromkeys(out))


class GpuFacts(BaseModel):
    name: str
    memory_bytes: int
    index: int = 0


class Capabilities(BaseModel):
    """What a worker node advertises in its beacon row (``workers.capabilities``)."""

    device_class: str = Field(description="'gpu', 'cpu' or 'unknown' (auto device before its first child)")
    device: str = Field(description="the configured device (auto, cpu, cuda, cuda:N)")
    gpu: GpuFacts | None = None
    torch: str | None = None
    cuda: str | None = None
    slot: int | None = None
    slots: int = 1
    queues: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list, description="datasets whose files this worker has")


@dataclass(frozen=True)
class LiveWorker:
    name: str
    device: str | None
    capabilities: Capabilities | None


def live_workers(session: Session, settings: Settings) -> list[LiveWorker]:
    cutoff = utcnow() - timedelta(seconds=settings.worker_seen_window_s)
    out: list[LiveWorker] = []
    rows = session.execute(
        select(WorkerSeen.name, WorkerSeen.device, WorkerSeen.capabilities, WorkerSeen.info).where(
            WorkerSeen.last_seen >= cutoff
        )
    )
    for name, device, caps, info in rows:
        out.append(LiveWorker(name, device, merged_capabilities(caps, info)))
    return out


def merged_capabilities(caps: dict[str, Any] | None, info: dict[str, Any] | None) -> Capabilities | None:
    """The beacon's capabilities completed by the pool child's device facts (the main process never
    touches CUDA, so only the child knows the GPU)."""
    if not caps:
        return None
    out = Capabilities.model_validate(caps)
    facts = (info or {}).get("device_facts")
    if isinstance(facts, dict):
        out.device_class = str(facts.get("device_class") or out.device_class)
        out.cuda = facts.get("cuda")
        gpu = facts.get("gpu")
        out.gpu = GpuFacts.model_validate(gpu) if isinstance(gpu, dict) else None
    return out


def any_worker_advertised(session: Session) -> bool:
    """Whether any worker ever wrote capabilities (else the API falls back to its own files)."""
    return (
        session.scalar(select(WorkerSeen.name).where(WorkerSeen.capabilities.is_not(None)).limit(1))
        is not None
    )


@dataclass(frozen=True)
class Availability:
    """The verdict for one routed queue of a batch."""

    queue: str
    device_class: DeviceClass
    consumers: int  # live workers consuming the queue
    with_dataset: int  # of those, how many have the dataset's files


def check_queues(
    session: Session, settings: Settings, classes: Sequence[DeviceClass], dataset: str
) -> list[Availability]:
    workers = [w for w in live_workers(session, settings) if w.capabilities is not None]
    out: list[Availability] = []
    for cls in dict.fromkeys(classes):
        queue = queue_name(settings, cls)
        consumers = [w for w in workers if w.capabilities and queue in w.capabilities.queues]
        have = [w for w in consumers if w.capabilities and dataset in w.capabilities.datasets]
        out.append(Availability(queue, cls, len(consumers), len(have)))
    return out


def consumers_per_class(session: Session, settings: Settings, classes: Sequence[str]) -> dict[str, int]:
    """Live workers consuming each class's queue (what the ETA divides that class's work by). A
    worker that advertised no queues (written before capabilities existed) counts for every class."""
    workers = live_workers(session, settings)
    out: dict[str, int] = {}
    for cls in classes:
        queue = queue_name(settings, cls)
        out[cls] = sum(1 for w in workers if w.capabilities is None or queue in w.capabilities.queues)
    return out
