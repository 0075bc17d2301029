"""Several worker processes on one device (``fastarchrank worker --slots K``), and the healthcheck.

Each slot is its own Celery worker node (``slotN@host``, its own beacon and claims), started with
``subprocess`` (fork + exec: nothing of this process, which never touches CUDA, is inherited). The
supervisor restarts a slot that died and stops every slot on SIGTERM/SIGINT (warm shutdown first,
then a kill after ``grace_s``). Torch-free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import FrameType

from app.processes import die_with_parent

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def slot_env(base: Mapping[str, str], slot: int, slots: int) -> dict[str, str]:
    """The environment of slot ``slot``: its node name (the beacon row and the owner of its claims)
    and its place on the device, which the beacon and the memory guard read."""
    env = dict(base)
    env["FASTARCHRANK_WORKER_NAME"] = f"{socket.gethostname()}@slot{slot}"
    env["FASTARCHRANK_SLOT"] = str(slot)
    env["FASTARCHRANK_SLOTS"] = str(slots)
    return env


class _Slot:
    def __init__(self, index: int, argv: list[str], env: dict[str, str]) -> None:
        self.index = index
        self.argv = argv
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.next_start = 0.0

    def start(self) -> None:
        # A slot stops (warm shutdown) when the supervisor dies, even by SIGKILL: no orphan slots
        # go on consuming the queue beside the ones a restarted supervisor starts.
        self.proc = subprocess.Popen(
            self.argv, env=self.env, start_new_session=True, preexec_fn=die_with_parent
        )
        log.info("slot %d started (pid %d)", self.index, self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def run_slots(
    argv_for: Callable[[int], list[str]], slots: int, env: Mapping[str, str], grace_s: float = 30.0
) -> int:
    """Run ``slots`` worker processes until SIGTERM/SIGINT; returns the exit status."""
    stop: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    workers = [_Slot(i, argv_for(i), slot_env(env, i, slots)) for i in range(slots)]
    for w in workers:
        w.start()
    while not stop:
        now = time.monotonic()
        for w in workers:
            if w.alive() or stop:
                continue
            if w.next_start == 0.0:
                code = w.proc.returncode if w.proc else None
                delay = RESTART_BACKOFF_S[min(w.restarts, len(RESTART_BACKOFF_S) - 1)]
                log.warning("slot %d exited (%s); restarting in %.0f s", w.index, code, delay)
                w.next_start = now + delay
            elif now >= w.next_start:
                w.restarts += 1
                w.next_start = 0.0
                w.start()
        time.sleep(0.2)
    log.info("stopping %d slots", slots)
    for w in workers:
        if w.alive() and w.proc is not None:
            w.proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown
    deadline = time.monotonic() + grace_s
    for w in workers:
        if w.proc is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Whatever is left of the slot's session (its pool child) ends here.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(w.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.proc.wait(timeout=5)
    return 0


def ping(name: str | None = None) -> int:
    """Exit status 0 if a worker node of this host (or the node ``name``) wrote its beacon within
    ``worker_dead_after_s``: the container healthcheck. One indexed query, no broker round trip."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import WorkerSeen, utcnow
    from app.settings import get_settings

    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.worker_dead_after_s)
    host = socket.gethostname()
    try:
        with session_scope() as session:
            rows = session.execute(
                select(WorkerSeen.name, WorkerSeen.last_seen).where(WorkerSeen.last_seen >= cutoff)
            ).all()
    except Exception as exc:
        print(f"fastarchrank worker --ping: database unreachable ({type(exc).__name__})")
        return 1
    mine = [n for n, _ in rows if (n == name if name else n.startswith((f"{host}:", f"{host}@")))]
    if mine:
        print(f"fastarchrank worker --ping: alive: {', '.join(sorted(mine))}")
        return 0
    print(f"fastarchrank worker --ping: no recent beacon from {name or host}")
    return 1
