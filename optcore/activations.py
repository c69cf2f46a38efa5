"""Hidden-layer activations, each a forward map and its derivative side by side.

Every derivative here can be written in terms of the activation's *output* ``A`` alone, so the network
keeps only ``A`` per layer and both functions work in place:

    forward(Z)      → A, overwriting Z           (shape (batch, units))
    backward(A, dA) → dZ = dA ⊙ g'(Z), overwriting dA
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optcore.errors import UnknownNameError

LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    backward: Callable[[np.ndarray, np.ndarray], np.ndarray]
    init: str  # the initialisation that keeps its activations' variance steady: "he" or "xavier"


# Read-only zeros arrays by (shape, dtype), oldest first. A step of an L-layer network needs one
# per hidden width; the validation set and a final partial batch add a few. np.zeros takes its pages from
# calloc, which the kernel maps to its one zero page, so even large entries cost address space, not memory.
_ZEROS: OrderedDict[tuple[tuple[int, ...], str], np.ndarray] = OrderedDict()
_ZEROS_KEPT = 64
_ZEROS_LOCK = threading.Lock()  # networks may train in several threads at once


def _zeros_like(z: np.ndarray) -> np.ndarray:
    """A read-only zeros array shaped like ``z``, kept for reuse."""
    key = (z.shape, z.dtype.str)
    zeros = _ZEROS.get(key)  # a hit, every step but the first: no lock (a dict read is atomic), no reordering
    if zeros is not None:
        return zeros
    with _ZEROS_LOCK:
        zeros = _ZEROS.get(key)
        if zeros is None:
            zeros = np.zeros(z.shape, z.dtype)
            zeros.flags.writeable = False
            _ZEROS[key] = zeros
            while len(_ZEROS) > _ZEROS_KEPT:
                _ZEROS.popitem(last=False)
        else:
            _ZEROS.move_to_end(key)
        return zeros


def _relu(z):
    # Against an array of zeros np.maximum runs NumPy's SIMD loop; against the scalar 0 it takes a broadcast
    # loop about 5× slower (35 → 7 µs for a 256 × 256 float32 batch): the largest elementwise cost of a step.
    return np.maximum(z, _zeros_like(z), out=z)


def _relu_backward(a, da):
    # A multiply by the mask, not da[a <= 0] = 0: boolean-mask assignment gathers indices first and is
    # 8–13× slower (bench/core.py: it was the largest non-matmul cost of a step).
    return np.multiply(da, a > 0, out=da)


def _leaky_relu(z):
    return np.maximum(z, LEAKY_SLOPE * z, out=z)


def _leaky_relu_backward(a, da):
    slope = np.where(a < 0, da.dtype.type(LEAKY_SLOPE), da.dtype.type(1))  # a multiply, as in _relu_backward
    return np.multiply(da, slope, out=da)


def _tanh(z):
    return np.tanh(z, out=z)


def _tanh_backward(a, da):  # g' = 1 − A²
    da *= 1 - a * a
    return da


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(z) = 1 / (1 + e^(−z)), evaluated without overflow for large |z|."""
    # σ(z) = (1 + tanh(z/2)) / 2 is exact and never overflows.
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def _sigmoid(z):
    return sigmoid(z, out=z)


def _sigmoid_backward(a, da):  # g' = A(1 − A)
    da *= a * (1 - a)
    return da


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", _relu, _relu_backward, "he"),
    "leaky_relu": Activation("leaky_relu", _leaky_relu, _leaky_relu_backward, "he"),
    "tanh": Activation("tanh", _tanh, _tanh_backward, "xavier"),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_backward, "xavier"),
}


def get_activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UnknownNameError("activation", name, list(ACTIVATIONS)) from None
