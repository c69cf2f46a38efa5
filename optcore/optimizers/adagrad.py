from __future__ import annotations

import numpy as np

from optcore.optimizers.base import EPS, LR, Optimizer
from optcore.optimizers.kernels import kernel

fused = kernel("adagrad")  # the same update in one compiled pass, or None


class Adagrad(Optimizer):
    """Adagrad: each step scaled by the root of the *sum* (not an average) of all squared gradients so far:

        G ← G + dW²,     W ← W − α·dW / (√G + ε)

    PyTorch: ``torch.optim.Adagrad(lr=α, eps=ε)`` (``lr_decay=0``, ``initial_accumulator_value=0``).
    """

    name = "adagrad"
    moment_names = ("G",)
    hyperparameters = (LR, EPS.with_default(1e-10))
    eps: float

    n_scratch = 2

    def _apply(self, p, g, moments, t, lr, scratch):
        G = moments["G"]
        if fused is not None and fused(p, g, G, self.eps, lr):
            return
        denom, step = scratch
        G += np.square(g, out=denom)
        np.sqrt(G, out=denom)
        denom += self.eps
        np.multiply(g, lr, out=step)  # lr·dW / denom, in that order
        step /= denom
        p -= step
