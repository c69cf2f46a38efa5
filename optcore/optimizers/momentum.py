from __future__ import annotations

import numpy as np

from optcore.ewa import ewa_update
from optcore.hyperparameters import Hyperparameter
from optcore.optimizers.base import BETA1, LR, Optimizer


class Momentum(Optimizer):
    """Gradient descent with momentum, an exponentially weighted average of the gradients:

        v ← β·v + (1−β)·dW,        W ← W − α·v
        Nesterov:                  W ← W − α·(β·v + (1−β)·dW)     (v already updated)

    ``beta1`` is β (named as in Adam so one search space covers both). β = 0 is plain gradient descent.
    No bias correction, as in PyTorch. PyTorch: ``torch.optim.SGD(lr=α·(1−β), momentum=β, nesterov=…)``,
    whose buffer is v/(1−β).
    """

    name = "momentum"
    moment_names = ("v",)
    hyperparameters = (LR, BETA1, Hyperparameter("nesterov", bool, default=False))
    beta1: float
    nesterov: bool

    @property
    def n_scratch(self) -> int:
        return 2 if self.nesterov else 1

    def _apply(self, p, g, moments, t, lr, scratch):
        v, b = moments["v"], self.beta1
        s = scratch[0]
        ewa_update(v, g, b, s)
        if self.nesterov:  # lr·(b·v + (1−b)·dW), each product in a scratch array
            np.multiply(v, b, out=s)
            s += np.multiply(g, 1 - b, out=scratch[1])
            s *= lr
        else:
            np.multiply(v, lr, out=s)
        p -= s
