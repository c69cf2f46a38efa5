from __future__ import annotations

import numpy as np

from optcore.optimizers.base import EPS, LR, Optimizer


class Adagrad(Optimizer):
    """Adagrad: each step scaled by the root of the *sum* (not an average) of all squared gradients so far:

        G ← G + dW²,     W ← W − α·dW / (√G + ε)

    PyTorch: ``torch.optim.Adagrad(lr=α, eps=ε)`` (``lr_decay=0``, ``initial_accumulator_value=0``).
    """

    name = "adagrad"
    moment_names = ("G",)
    hyperparameters = (LR, EPS.with_default(1e-10))
    eps: float

    def _apply(self, p, g, moments, t, lr):
        G = moments["G"]
        G += g * g
        denom = np.sqrt(G)
        denom += self.eps
        p -= lr * g / denom
