from __future__ import annotations

import math

import numpy as np

from optcore.ewa import bias_correction, ewa_update
from optcore.optimizers.base import Optimizer, check


class Adam(Optimizer):
    """Adam: momentum and RMSProp together, both bias-corrected:

        m ← β₁·m + (1−β₁)·dW,    v ← β₂·v + (1−β₂)·dW²
        m̂ = m / (1−β₁ᵗ),         v̂ = v / (1−β₂ᵗ)
        W ← W − α·m̂ / (√v̂ + ε)                 (ε outside the square root)

    PyTorch: ``torch.optim.Adam(lr=α, betas=(β₁, β₂), eps=ε)``.
    """

    name = "adam"
    moment_names = ("m", "v")

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.beta1 = check("beta1", beta1, 0.0, 1.0)
        self.beta2 = check("beta2", beta2, 0.0, 1.0)
        self.eps = check("eps", eps, 0.0, low_open=True)

    def _apply(self, p, g, moments, t, lr):
        m, v = moments["m"], moments["v"]
        # One scratch array for every intermediate (12 passes over p, no other temporaries), and the bias
        # corrections folded into two scalars, as torch's foreach Adam does:
        #     α·m̂/(√v̂ + ε) = (α·√c₂/c₁)·m / (√v + ε·√c₂),   c = 1 − βᵗ
        scratch = np.empty_like(p)
        ewa_update(m, g, self.beta1, scratch)
        np.multiply(g, g, out=scratch)
        ewa_update(v, scratch, self.beta2, scratch)
        root_c2 = math.sqrt(bias_correction(self.beta2, t))
        np.sqrt(v, out=scratch)
        scratch += self.eps * root_c2
        np.divide(m, scratch, out=scratch)
        scratch *= lr * root_c2 / bias_correction(self.beta1, t)
        p -= scratch


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay λ, applied to the weights before the Adam step:

        W ← W·(1 − α·λ),  then the Adam update.

    PyTorch: ``torch.optim.AdamW(lr=α, betas=(β₁, β₂), eps=ε, weight_decay=λ)``.
    """

    name = "adamw"

    def __init__(
        self,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        super().__init__(lr, beta1, beta2, eps)
        self.weight_decay = check("weight_decay", weight_decay, 0.0)

    def _apply(self, p, g, moments, t, lr):
        if self.weight_decay:
            p *= 1.0 - lr * self.weight_decay
        super()._apply(p, g, moments, t, lr)
