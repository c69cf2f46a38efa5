from __future__ import annotations

import numpy as np

from optcore.optimizers.base import Optimizer, check


class Adagrad(Optimizer):
    """Adagrad: each step scaled by the root of the *sum* (not an average) of all squared gradients so far:

        G ← G + dW²,     W ← W − α·dW / (√G + ε)

    PyTorch: ``torch.optim.Adagrad(lr=α, eps=ε)`` (``lr_decay=0``, ``initial_accumulator_value=0``).
    """

    name = "adagrad"
    moment_names = ("G",)

    def __init__(self, lr: float, eps: float = 1e-10):
        super().__init__(lr)
        self.eps = check("eps", eps, 0.0, low_open=True)

    def _apply(self, p, g, moments, t, lr):
        G = moments["G"]
        G += g * g
        denom = np.sqrt(G)
        denom += self.eps
        p -= lr * g / denom
