from __future__ import annotations

import numpy as np

from optcore.ewa import ewa_update
from optcore.optimizers.base import BETA2, EPS, LR, Optimizer
from optcore.optimizers.kernels import kernel

fused = kernel("rmsprop")  # the same update in one compiled pass, or None


class RMSProp(Optimizer):
    """RMSProp: an exponentially weighted average of squared gradients scales each step:

        s ← β₂·s + (1−β₂)·dW²,     W ← W − α·dW / (√s + ε)

    No bias correction, as in PyTorch. PyTorch: ``torch.optim.RMSprop(lr=α, alpha=β₂, eps=ε)``.
    """

    name = "rmsprop"
    moment_names = ("s",)
    hyperparameters = (LR, BETA2.with_default(0.99), EPS)
    beta2: float
    eps: float

    n_scratch = 2

    def _apply(self, p, g, moments, t, lr, scratch):
        s = moments["s"]
        if fused is not None and fused(p, g, s, self.beta2, 1.0 - self.beta2, self.eps, lr):
            return
        denom, step = scratch
        np.square(g, out=denom)
        ewa_update(s, denom, self.beta2, denom)
        np.sqrt(s, out=denom)
        denom += self.eps
        np.multiply(g, lr, out=step)  # lr·dW / denom, in that order
        step /= denom
        p -= step
