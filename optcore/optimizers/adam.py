from __future__ import annotations

import math

import numpy as np

from optcore.ewa import bias_correction, ewa_update
from optcore.hyperparameters import Hyperparameter
from optcore.optimizers.base import BETA1, BETA2, EPS, LR, Optimizer
from optcore.optimizers.kernels import kernel

fused = kernel("adam")  # the same update in one compiled pass, or None


class Adam(Optimizer):
    """Adam: momentum and RMSProp together, both bias-corrected:

        m ← β₁·m + (1−β₁)·dW,    v ← β₂·v + (1−β₂)·dW²
        m̂ = m / (1−β₁ᵗ),         v̂ = v / (1−β₂ᵗ)
        W ← W − α·m̂ / (√v̂ + ε)                 (ε outside the square root)

    PyTorch: ``torch.optim.Adam(lr=α, betas=(β₁, β₂), eps=ε)``.
    """

    name = "adam"
    moment_names = ("m", "v")
    hyperparameters = (LR, BETA1, BETA2, EPS)
    beta1: float
    beta2: float
    eps: float

    def _apply(self, p, g, moments, t, lr, scratch):
        m, v = moments["m"], moments["v"]
        # One scratch array for every intermediate (12 passes over p, no other temporaries), and the bias
        # corrections folded into two scalars, as torch's foreach Adam does:
        #     α·m̂/(√v̂ + ε) = (α·√c₂/c₁)·m / (√v + ε·√c₂),   c = 1 − βᵗ
        root_c2 = math.sqrt(bias_correction(self.beta2, t))
        eps_term = self.eps * root_c2
        step_scale = lr * root_c2 / bias_correction(self.beta1, t)
        b1, b2 = self.beta1, self.beta2
        if fused is not None and fused(p, g, m, v, b1, 1.0 - b1, b2, 1.0 - b2, eps_term, step_scale):
            return  # the same operations in one pass over the five arrays instead of twelve
        (scratch,) = scratch
        ewa_update(m, g, self.beta1, scratch)
        np.square(g, out=scratch)  # g·g: the same product, but square reads g once (2× faster)
        ewa_update(v, scratch, self.beta2, scratch)
        np.sqrt(v, out=scratch)
        scratch += eps_term
        np.divide(m, scratch, out=scratch)
        scratch *= step_scale
        p -= scratch


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay λ, applied to the weights before the Adam step:

        W ← W·(1 − α·λ),  then the Adam update.

    PyTorch: ``torch.optim.AdamW(lr=α, betas=(β₁, β₂), eps=ε, weight_decay=λ)``.
    """

    name = "adamw"
    hyperparameters = (*Adam.hyperparameters, Hyperparameter("weight_decay", float, 0.0, default=1e-2))
    weight_decay: float

    def _apply(self, p, g, moments, t, lr, scratch):
        if self.weight_decay:
            p *= 1.0 - lr * self.weight_decay
        super()._apply(p, g, moments, t, lr, scratch)
