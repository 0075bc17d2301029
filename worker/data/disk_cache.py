"""Build-once files shared by every worker process on a machine.

A file lock serialises builders of the same file (the second process waits and then reads what the first
wrote instead of building it again) and the result appears atomically (temporary file + ``os.replace``),
so a reader never sees a half-written file, even if a builder dies mid-way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    # The lock file is never deleted: removing it would let a third process lock a fresh inode while the
    # second still waits on the old one.
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _try_load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        # weights_only: the cache holds tensors and plain values only, so nothing executable is accepted.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # unreadable (e.g. written by an incompatible version): rebuild it


def _write_atomically(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_or_build(path: Path, build: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The payload stored at ``path``, building and storing it first if needed.

    Returns ``(payload, built_here)``; ``built_here`` is False when the file already existed or another
    process built it while this one waited for the lock.
    """
    payload = _try_load(path)
    if payload is not None:
        return payload, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(path.with_name(path.name + ".lock")):
        payload = _try_load(path)
        if payload is not None:
            return payload, False
        payload = build()
        _write_atomically(path, payload)
        return payload, True
