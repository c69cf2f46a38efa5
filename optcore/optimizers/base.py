"""The optimizer interface: hyperparameters checked once, state explicit, parameters passed in every step.

    opt = make_optimizer("adam", lr=1e-3)
    state = opt.init(params)                      # step count and moments, no reference to params
    state = opt.update(params, grads, state)      # params updated in place; the new state returned
    state = opt.update(params, grads, state, lr=schedule(t))   # a scheduled learning rate

``params`` and ``grads`` are equal-length lists of arrays of matching shapes (e.g. ``[W_1, b_1, …]``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from optcore.errors import OptcoreError


@dataclass
class OptState:
    """An optimizer's changing state: the number of updates applied and its moment arrays by name.

    It is plain data (an int and lists of arrays) and can be pickled or saved with ``numpy.savez``.
    """

    step: int = 0
    moments: dict[str, list[np.ndarray]] = field(default_factory=dict)


def check(
    name: str,
    value: float,
    low: float,
    high: float = np.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    """Return ``value`` as a float if it lies in the stated interval, else raise a message naming it."""
    value = float(value)
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (ok_low and ok_high and np.isfinite(value)):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise OptcoreError(f"{name} must be in {interval}; got {value:g}")
    return value


class Optimizer(ABC):
    """Base class: subclasses set ``name``, validate in ``__init__`` and implement :meth:`_apply`."""

    name: str = ""
    moment_names: tuple[str, ...] = ()

    def __init__(self, lr: float):
        self.lr = check("lr", lr, 0.0, low_open=True)

    def hyperparams(self) -> dict[str, object]:
        """The hyperparameters this optimizer was built with, by name."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams().items())
        return f"{type(self).__name__}({args})"

    def init(self, params: Sequence[np.ndarray]) -> OptState:
        """Zeroed moments shaped like ``params``; step 0."""
        return OptState(0, {name: [np.zeros_like(p) for p in params] for name in self.moment_names})

    def update(
        self,
        params: Sequence[np.ndarray],
        grads: Sequence[np.ndarray],
        state: OptState,
        lr: float | None = None,
    ) -> OptState:
        """Apply one update to ``params`` in place from ``grads``; return the state after it.

        ``lr`` overrides the learning rate for this step (a schedule's value); by default ``self.lr``.
        """
        state.step += 1
        lr = self.lr if lr is None else lr
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            self._apply(p, g, {k: v[i] for k, v in state.moments.items()}, state.step, lr)
        return state

    @abstractmethod
    def _apply(self, p: np.ndarray, g: np.ndarray, moments: dict[str, np.ndarray], t: int, lr: float) -> None:
        """Update one parameter array ``p`` in place at step ``t`` (from 1)."""
