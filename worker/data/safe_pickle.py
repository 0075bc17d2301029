"""Reading the dataset pickles without letting them run code.

CIFAR and ImageNet16 files are pickles (many written by Python 2). A plain ``pickle.load`` would call
any function named in the file, so only the globals these files really contain are resolved: numpy's
array and dtype reconstruction helpers. Dicts, lists, strings, bytes and ints need no globals at all.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2 moved the internals to numpy._core; old pickles still name numpy.core
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer  # type: ignore[attr-defined,no-redef]

_ALLOWED: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_module}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED[(f"{_module}.multiarray", "scalar")] = scalar  # numpy scalars, e.g. a stored mean
    _ALLOWED[(f"{_module}.numeric", "_frombuffer")] = _frombuffer  # protocol-5 arrays


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a dataset pickle (only numpy arrays, dicts, "
                "lists, strings and numbers are)"
            ) from None


def load_dataset_pickle(path: Path) -> Any:
    """Unpickle a dataset file; ``latin1`` turns Python 2 byte strings into text and keeps the numpy
    array payloads byte-exact (numpy re-encodes them with latin1)."""
    with open(path, "rb") as handle:
        return _RestrictedUnpickler(handle, encoding="latin1").load()
