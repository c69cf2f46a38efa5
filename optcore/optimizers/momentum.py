from __future__ import annotations

from optcore.ewa import ewa_update
from optcore.hyperparameters import Hyperparameter
from optcore.optimizers.base import BETA1, LR, Optimizer
from optcore.optimizers.kernels import kernel

fused = kernel("momentum")  # the same update in one compiled pass, or None


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

    n_scratch = 0  # at 94k parameters as fast with temporaries as with kept scratch arrays; faster when small

    def _apply(self, p, g, moments, t, lr, scratch):
        v, b = moments["v"], self.beta1
        if fused is not None and fused(p, g, v, b, 1.0 - b, lr, self.nesterov):
            return
        ewa_update(v, g, b)
        if self.nesterov:
            p -= lr * (b * v + (1 - b) * g)
        else:
            p -= lr * v
