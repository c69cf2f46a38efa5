from __future__ import annotations

from optcore.optimizers.base import Optimizer


class GD(Optimizer):
    """Plain (mini-batch) gradient descent: ``W ← W − α·dW``.

    PyTorch: ``torch.optim.SGD(lr=α)``.
    """

    name = "gd"

    n_scratch = 0  # one pass through a temporary measured faster than two through a kept scratch array

    def _apply(self, p, g, moments, t, lr, scratch):
        p -= lr * g
