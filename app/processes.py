"""Child-process lifetime shared by `serve`'s worker guard and the worker's slots (torch-free)."""

from __future__ import annotations

import signal
import sys


def die_with_parent() -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: on Linux the child gets SIGTERM when the process
    that started it dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``), so a Celery worker behind
    it makes its warm shutdown instead of running on unsupervised. Elsewhere a no-op: callers that
    need it everywhere also poll their parent pid. ctypes because the standard library has no
    binding for prctl."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
