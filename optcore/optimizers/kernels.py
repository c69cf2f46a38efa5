"""The compiled one-pass updates (``optcore/_kernels.c``), when the install could build them.

``kernel(name)`` is the function, or None: then the optimizer makes the same update with NumPy, to the same
bits. A kernel returns False, having changed nothing, for arrays it does not take (not C-contiguous float32
or float64 of one length and type); the optimizer then takes the NumPy path too.
"""

from __future__ import annotations

from collections.abc import Callable

try:
    from optcore import _kernels
except ImportError:  # no C compiler at install time
    _kernels = None


def kernel(name: str) -> Callable[..., bool] | None:
    """``optcore._kernels.<name>``, or None when the extension is not built."""
    return getattr(_kernels, name, None)
