from __future__ import annotations

import numpy as np

from optcore.ewa import ewa_update
from optcore.optimizers.base import Optimizer, check


class RMSProp(Optimizer):
    """RMSProp: an exponentially weighted average of squared gradients scales each step:

        s ← β₂·s + (1−β₂)·dW²,     W ← W − α·dW / (√s + ε)

    No bias correction, as in PyTorch. PyTorch: ``torch.optim.RMSprop(lr=α, alpha=β₂, eps=ε)``.
    """

    name = "rmsprop"
    moment_names = ("s",)

    def __init__(self, lr: float, beta2: float = 0.99, eps: float = 1e-8):
        super().__init__(lr)
        self.beta2 = check("beta2", beta2, 0.0, 1.0)
        self.eps = check("eps", eps, 0.0, low_open=True)

    def _apply(self, p, g, moments, t, lr):
        s = moments["s"]
        ewa_update(s, g * g, self.beta2)
        denom = np.sqrt(s)
        denom += self.eps
        p -= lr * g / denom
