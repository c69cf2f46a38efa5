"""Output layers and their losses, by task. Each loss works on the pre-activation output ``Z`` (logits):

    binary      sigmoid + log-loss       L = log(1 + e^z) − y·z              ∂L/∂z = σ(z) − y
    multiclass  softmax + cross-entropy  L = logsumexp(z) − Σ_k y_k·z_k      ∂L/∂z = softmax(z) − y
    regression  identity + squared error L = mean_k (z_k − y_k)²             ∂L/∂z = 2(z − y)/K

Shapes: ``Z`` and ``Y`` are ``(batch, K)``; binary and regression targets are ``(batch, 1)`` floats,
multiclass targets are one-hot ``(batch, K)``. ``total`` returns Σ over the batch (the caller divides by m);
``gradient`` returns ∂L/∂z per sample, written into ``out``; ``total_and_gradient`` does both in one call
(the training step's), with the same numbers as the two apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from optcore.activations import sigmoid
from optcore.errors import UnknownNameError


def _logaddexp0(z: np.ndarray) -> np.ndarray:
    """log(1 + e^z) computed stably: max(z, 0) + log1p(e^(−|z|))."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def _binary_total(z, y):
    return float(np.sum(_logaddexp0(z) - y * z))


def _binary_gradient(z, y, out):
    sigmoid(z, out=out)
    out -= y
    return out


def _binary_predict(z):
    return sigmoid(z.copy())


def _multiclass_total(z, y):
    return float(np.sum(_logsumexp(z)) - np.sum(y * z))


def _softmax(z, out):
    np.subtract(z, z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _multiclass_gradient(z, y, out):
    _softmax(z, out)
    out -= y
    return out


def _multiclass_total_and_gradient(z, y, out):
    """``_multiclass_total`` and ``_multiclass_gradient`` sharing the row maxima, e^(z − max) and its row
    sums, and with no temporary of ``z``'s size: the operations of the two, in the same order, on ``out``.
    The reductions call the ufuncs' ``reduce`` that ``np.sum`` and ``ndarray.max`` wrap (the same loops;
    the wrappers cost as much as the arithmetic at 64 × 10)."""
    yz = np.add.reduce(np.multiply(y, z, out=out), axis=None)
    top = np.maximum.reduce(z, axis=1, keepdims=True)
    np.subtract(z, top, out=out)
    np.exp(out, out=out)
    sums = np.add.reduce(out, axis=1, keepdims=True)
    lse = np.log(sums)
    lse += top  # logsumexp(z) per row
    total = float(np.add.reduce(lse[:, 0]) - yz)
    out /= sums
    out -= y
    return total


def _total_then_gradient(total, gradient, z, y, out):
    """``total_and_gradient`` as the two calls one after the other (bound with functools.partial, which
    pickles with the Loss, as a closure would not)."""
    value = total(z, y)
    gradient(z, y, out)
    return value


def _multiclass_predict(z):
    return _softmax(z, np.empty_like(z))


def _squared_total(z, y):
    d = z - y
    return float(np.sum(d * d)) / z.shape[1]


def _squared_gradient(z, y, out):
    np.subtract(z, y, out=out)
    out *= 2.0 / z.shape[1]
    return out


def _accuracy_binary(z, y):
    return float(np.mean((z > 0) == (y > 0.5)))


def _accuracy_multiclass(z, y):
    return float(np.mean(z.argmax(axis=1) == y.argmax(axis=1)))


def _r2(z, y):
    ss_res = float(np.sum((y - z) ** 2))
    ss_tot = float(np.sum((y - y.mean(axis=0)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


@dataclass(frozen=True)
class Loss:
    task: str
    output: str  # the output activation the loss assumes
    total: Callable[[np.ndarray, np.ndarray], float]
    gradient: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    predict: Callable[[np.ndarray], np.ndarray]  # logits → probabilities or values
    metric: Callable[[np.ndarray, np.ndarray], float]
    metric_name: str
    # (z, y, out) → total, the gradient written into out; None: total then gradient
    total_and_gradient: Callable[[np.ndarray, np.ndarray, np.ndarray], float] | None = field(
        default=None, compare=False
    )

    def __post_init__(self):
        if self.total_and_gradient is None:
            object.__setattr__(self, "total_and_gradient", partial(_total_then_gradient, self.total, self.gradient))


LOSSES: dict[str, Loss] = {
    "binary": Loss(
        "binary",
        "sigmoid",
        _binary_total,
        _binary_gradient,
        _binary_predict,
        _accuracy_binary,
        "val_accuracy",
    ),
    "multiclass": Loss(
        "multiclass",
        "softmax",
        _multiclass_total,
        _multiclass_gradient,
        _multiclass_predict,
        _accuracy_multiclass,
        "val_accuracy",
        _multiclass_total_and_gradient,
    ),
    "regression": Loss("regression", "identity", _squared_total, _squared_gradient, lambda z: z.copy(), _r2, "val_r2"),
}


def get_loss(task: str) -> Loss:
    try:
        return LOSSES[task]
    except KeyError:
        raise UnknownNameError("task", task, list(LOSSES)) from None
