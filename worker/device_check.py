"""Fail a worker at start, with a message that says what to fix, when the device it was asked for is absent.

Without this a CUDA worker on a CPU-only torch wheel (or a container without its GPU mapped) starts,
shows as alive in ``/v1/health`` and then fails every task at ``torch.cuda.set_device``, while the
sweeper re-sends them every minute. Call ``require_device(settings.device)`` once at worker start-up;
``python -m worker.device_check [device]`` runs the same check from a shell (exit status 1 on failure).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch


class DeviceUnavailable(RuntimeError):
    """The configured device cannot be used by this process."""


@dataclass(frozen=True)
class DeviceFacts:
    """What the check found; also useful to print at start."""

    wanted: str
    resolved: str
    torch_version: str
    torch_cuda: str | None  # None: a CPU-only torch wheel
    visible_devices: str | None
    cuda_devices: int


def _facts(wanted: str, resolved: str) -> DeviceFacts:
    available = torch.cuda.is_available()
    return DeviceFacts(
        wanted=wanted,
        resolved=resolved,
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        cuda_devices=torch.cuda.device_count() if available else 0,
    )


def require_device(wanted: str) -> DeviceFacts:
    """Check ``wanted`` ("auto", "cpu", "cuda" or "cuda:N"); raise ``DeviceUnavailable`` naming the fix."""
    wanted = (wanted or "auto").strip().lower()
    if wanted == "auto":
        return _facts(wanted, "cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError as exc:
        raise DeviceUnavailable(
            f"device {wanted!r} is not a device name; use auto, cpu, cuda or cuda:N ({exc})"
        ) from None
    if device.type == "cpu":
        return _facts(wanted, "cpu")
    if device.type != "cuda":
        raise DeviceUnavailable(
            f"device {wanted!r} is not supported by the worker; use auto, cpu, cuda or cuda:N"
        )
    facts = _facts(wanted, str(device))
    if facts.torch_cuda is None:
        raise DeviceUnavailable(
            f"this worker was asked for {wanted!r} but torch {facts.torch_version} is a CPU-only build. "
            "Install a CUDA wheel of torch (the Docker image's `worker-cuda` target does) or start the "
            "worker with --device cpu."
        )
    if facts.cuda_devices == 0:
        raise DeviceUnavailable(
            f"this worker was asked for {wanted!r} but sees no CUDA device (torch {facts.torch_version}, "
            f"CUDA {facts.torch_cuda}, CUDA_VISIBLE_DEVICES={facts.visible_devices!r}). Check that the "
            "NVIDIA driver is loaded (`nvidia-smi`), that the container was given the GPU (compose "
            "`deploy.resources.reservations.devices` or `docker run --gpus`) and that the driver is new "
            "enough for this CUDA version; or start the worker with --device cpu."
        )
    index = device.index or 0
    if index >= facts.cuda_devices:
        raise DeviceUnavailable(
            f"this worker was asked for {wanted!r} but sees {facts.cuda_devices} CUDA device(s), numbered "
            f"from 0 (CUDA_VISIBLE_DEVICES={facts.visible_devices!r}). Indices count the devices this "
            "process sees: a container given host GPU 1 sees it as cuda:0."
        )
    return facts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    wanted = args[0] if args else os.environ.get("FASTARCHRANK_DEVICE", "auto")
    try:
        facts = require_device(wanted)
    except DeviceUnavailable as exc:
        print(f"fastarchrank worker: {exc}", file=sys.stderr)
        return 1
    print(
        f"fastarchrank worker: device {facts.resolved} (torch {facts.torch_version}, CUDA {facts.torch_cuda})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
