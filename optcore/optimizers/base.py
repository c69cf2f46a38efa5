"""The optimizer interface: hyperparameters declared and checked once, state explicit, parameters passed in
every step.

    opt = make_optimizer("adam", lr=1e-3)
    state = opt.init(params)                      # step count and moments, no reference to params
    state = opt.update(params, grads, state)      # params updated in place; the new state returned
    state = opt.update(params, grads, state, lr=schedule(t))   # a scheduled learning rate

``params`` and ``grads`` are equal-length lists of arrays of matching shapes (e.g. ``[W_1, b_1, …]``).

Each optimizer declares the hyperparameters it takes (``hyperparameters``: name, type, interval, default; see
:mod:`optcore.hyperparameters`); its constructor checks keyword arguments against them, and so does anyone
validating a setting ahead of training.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from optcore.hyperparameters import Hyperparameter, bind


@dataclass
class OptState:
    """An optimizer's changing state: the number of updates applied and its moment arrays by name.

    It is plain data (an int and lists of arrays) and can be pickled or saved with ``numpy.savez``.
    ``scratch`` is not state: buffers for the update's intermediates, one list per parameter array, kept
    here (not in the optimizer, which may serve several trainings at once) so that a step allocates no
    array of the parameters' size. Their contents mean nothing between steps; they are left out of
    comparisons, the repr and pickles, and made again when missing.
    """

    step: int = 0
    moments: dict[str, list[np.ndarray]] = field(default_factory=dict)
    scratch: list[list[np.ndarray]] = field(default_factory=list, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {"step": self.step, "moments": self.moments}

    def __setstate__(self, saved: dict) -> None:
        self.step, self.moments, self.scratch = saved["step"], saved["moments"], []


# The hyperparameters optimizers share, with one domain each (an optimizer may give its own default).
LR = Hyperparameter("lr", float, 0.0, low_open=True)
BETA1 = Hyperparameter("beta1", float, 0.0, 1.0, default=0.9)
BETA2 = Hyperparameter("beta2", float, 0.0, 1.0, default=0.999)
EPS = Hyperparameter("eps", float, 0.0, low_open=True, default=1e-8)


class Optimizer(ABC):
    """Base class: subclasses set ``name``, declare ``hyperparameters`` and implement :meth:`_apply`.

    ``Optimizer(**hyperparams)`` checks each keyword argument against the declaration, fills in defaults and
    keeps every value as an attribute of the same name (``opt.beta1``).
    """

    name: str = ""
    moment_names: tuple[str, ...] = ()
    n_scratch: int = 1  # scratch arrays shaped like each parameter that :meth:`_apply` works in
    hyperparameters: ClassVar[tuple[Hyperparameter, ...]] = (LR,)
    lr: float

    def __init__(self, **hyperparams: object):
        for key, value in bind(f"optimizer {self.name!r}", self.hyperparameters, hyperparams).items():
            setattr(self, key, value)

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
        # A Python float, so that float32 parameters are updated in float32 whatever type lr came in as.
        lr = self.lr if lr is None else float(lr)
        scratch = self._scratch(state, params)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            self._apply(p, g, {k: v[i] for k, v in state.moments.items()}, state.step, lr, scratch[i])
        return state

    def _scratch(self, state: OptState, params: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        """``state.scratch``, made when missing (a fresh or unpickled state). Shapes are not checked: a state
        whose moments fit ``params`` has scratch arrays that fit too (a per-step check costs 2 µs)."""
        scratch = state.scratch
        if len(scratch) != len(params) or (scratch and len(scratch[0]) < self.n_scratch):
            scratch[:] = [[np.empty_like(p) for _ in range(self.n_scratch)] for p in params]
        return scratch

    @abstractmethod
    def _apply(
        self, p: np.ndarray, g: np.ndarray, moments: dict[str, np.ndarray], t: int, lr: float, scratch: list[np.ndarray]
    ) -> None:
        """Update one parameter array ``p`` in place at step ``t`` (from 1); ``scratch`` holds
        :attr:`n_scratch` arrays shaped like ``p`` whose contents it may overwrite."""
