"""The compiled one-pass updates (``optcore/_kernels.c``), when the install could build them.

``kernel(name)`` is the function, or None: then the optimizer makes the same update with NumPy, to the same
bits. A kernel returns False, having changed nothing, for arrays it does not take (not C-contiguous float32
or float64 of one shape and type); the optimizer then takes the NumPy path too.

A checkout whose ``_kernels.c`` is newer than the built module (edited, or changed by a pull, since
``pip install -e .``) does not use the stale build: it says so once and makes its updates in NumPy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

try:
    from optcore import _kernels
except ImportError:  # no C compiler at install time
    _kernels = None


def _stale(module) -> bool:
    source = Path(__file__).resolve().parents[1] / "_kernels.c"
    try:
        return source.stat().st_mtime > Path(module.__file__).stat().st_mtime
    except OSError:  # an installed package keeps no source beside its build
        return False


if _kernels is not None and _stale(_kernels):
    warnings.warn(
        f"optcore's compiled updates ({_kernels.__file__}) are older than optcore/_kernels.c: rebuild them "
        "with `pip install -e .`; until then optcore makes its updates in NumPy (the same results, slower)",
        stacklevel=2,
    )
    _kernels = None


def kernel(name: str) -> Callable[..., bool] | None:
    """``optcore._kernels.<name>``, or None when the extension is not built (or stale)."""
    return getattr(_kernels, name, None)
