from __future__ import annotations

import numpy as np

from optcore.optimizers.base import Optimizer


class GD(Optimizer):
    """Plain (mini-batch) gradient descent: ``W ← W − α·dW``.

    PyTorch: ``torch.optim.SGD(lr=α)``.
    """

    name = "gd"

    def _apply(self, p, g, moments, t, lr, scratch):
        p -= np.multiply(g, lr, out=scratch[0])  # lr·dW, in the scratch array
