"""Mini-batches: each epoch a fresh permutation, full batches of ``batch_size`` and one final partial batch.

``batch_size = 1`` is stochastic gradient descent; ``batch_size ≥ m`` is batch gradient descent.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from optcore.errors import OptcoreError


def minibatches(
    X: np.ndarray, Y: np.ndarray, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(X_batch, Y_batch)`` covering every row of ``(X, Y)`` exactly once, in a random order.

    ``X`` is ``(m, n)``, ``Y`` is ``(m, k)``. The data are permuted once per call (one copy each), so every
    batch is a contiguous slice, not a gather; ⌈m / batch_size⌉ batches, the last of ``m mod batch_size``
    rows when that is not zero.
    """
    m = X.shape[0]
    if int(batch_size) != batch_size or batch_size < 1:
        raise OptcoreError(f"batch_size must be a whole number ≥ 1; got {batch_size}")
    perm = rng.permutation(m)
    X, Y = X[perm], Y[perm]
    for start in range(0, m, batch_size):
        yield X[start : start + batch_size], Y[start : start + batch_size]


def n_batches(m: int, batch_size: int) -> int:
    """Iterations per epoch: ⌈m / batch_size⌉."""
    return -(-m // batch_size)
