"""The exponentially weighted average, written once.

    v_t = β·v_{t−1} + (1−β)·θ_t,      v_0 = 0
    v̂_t = v_t / (1 − β^t)             (bias correction)

Momentum, RMSProp and Adam keep their moments with :func:`ewa_update`; Adam divides by
:func:`bias_correction`; :func:`ewa` smooths a whole series such as the mini-batch cost curve.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def ewa_update(average: np.ndarray, value: np.ndarray, beta: float, scratch: np.ndarray | None = None) -> None:
    """Advance ``average`` in place: ``average = β·average + (1−β)·value``.

    ``average`` and ``value`` have the same shape. ``scratch`` (same shape) avoids a temporary for
    ``(1−β)·value`` in hot loops.
    """
    average *= beta
    if scratch is None:
        average += (1.0 - beta) * value
    else:
        np.multiply(value, 1.0 - beta, out=scratch)
        average += scratch


def bias_correction(beta: float, t: int) -> float:
    """The divisor ``1 − β^t`` that removes the zero-start bias after ``t ≥ 1`` updates."""
    return 1.0 - beta**t


def ewa(values: Iterable[float], beta: float, *, corrected: bool = True) -> list[float]:
    """The exponentially weighted average of a series, one output per input.

    With ``corrected`` each value is divided by ``1 − β^t``, so a constant series averages to itself.
    """
    running = RunningEWA(beta, corrected=corrected)
    return [running.update(v) for v in values]


class RunningEWA:
    """The EWA of a stream of scalars, one value at a time (the mini-batch cost curve during training)."""

    def __init__(self, beta: float, *, corrected: bool = True):
        self.beta, self.corrected = beta, corrected
        self.average, self.t = 0.0, 0

    def update(self, value: float) -> float:
        """Fold in ``value``; return the (bias-corrected, if asked) average so far."""
        self.t += 1
        self.average = self.beta * self.average + (1.0 - self.beta) * float(value)
        if self.corrected and self.beta > 0:
            return self.average / bias_correction(self.beta, self.t)
        return self.average
