"""Gradient checking by two-sided finite differences, in float64.

    rel_err = ‖g − ĝ‖ / (‖g‖ + ‖ĝ‖),   ĝ_i = (J(θ + h·e_i) − J(θ − h·e_i)) / 2h

A correct backward pass gives rel_err around 1e-9 in float64 with h = 1e-6 (errors of O(h²) plus round-off).
In float32 the round-off of J (~1e-7·|J|) divided by 2h is of the order of the gradient itself, so a
float32 network is refused rather than given a meaningless number (0.2 for a correct backward pass).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optcore.errors import OptcoreError
from optcore.network import Network


def _require_float64(network: Network, params: Sequence[np.ndarray]) -> None:
    wrong = (
        network.dtype if network.dtype != np.float64 else next((p.dtype for p in params if p.dtype != np.float64), None)
    )
    if wrong is not None:
        raise OptcoreError(
            f"gradient checking needs float64, got {wrong}: finite differences in {wrong} are swamped by "
            "round-off; build the network with dtype=np.float64 (and its parameters with its init)"
        )


def numerical_gradient(
    network: Network,
    params: Sequence[np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    h: float = 1e-6,
    n_train: int | None = None,
) -> list[np.ndarray]:
    """ĝ for every parameter entry (perturbs ``params`` in place and restores them); float64 only.

    ``n_train`` scales the L2 term as in :meth:`Network.cost` (default: the rows of ``X``).
    """
    _require_float64(network, params)
    out = []
    for p in params:
        g = np.zeros_like(p, dtype=np.float64)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            plus = network.cost(params, X, Y, n_train)
            flat[i] = keep - h
            minus = network.cost(params, X, Y, n_train)
            flat[i] = keep
            gflat[i] = (plus - minus) / (2 * h)
        out.append(g)
    return out


def gradient_check(
    network: Network,
    params: Sequence[np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    h: float = 1e-6,
    n_train: int | None = None,
) -> float:
    """Relative error between the backward pass and finite differences, over all parameters.

    Use a float64 network (a float32 one raises :class:`OptcoreError`) and small shapes: the cost is
    evaluated twice per parameter entry. ``X`` and ``Y`` are converted to float64.
    """
    _require_float64(network, params)
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    _, analytic = network.cost_and_grad(params, X, Y, n_train=n_train)
    numeric = numerical_gradient(network, params, X, Y, h, n_train)
    a = np.concatenate([g.ravel() for g in analytic])
    n = np.concatenate([g.ravel() for g in numeric])
    return float(np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n)))
