"""Gradient checking by two-sided finite differences, in float64.

    rel_err = ‖g − ĝ‖ / (‖g‖ + ‖ĝ‖),   ĝ_i = (J(θ + h·e_i) − J(θ − h·e_i)) / 2h

A correct backward pass gives rel_err around 1e-9 in float64 with h = 1e-6 (errors of O(h²) plus round-off).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optcore.network import Network


def numerical_gradient(
    network: Network, params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray, h: float = 1e-6
) -> list[np.ndarray]:
    """ĝ for every parameter entry (perturbs ``params`` in place and restores them)."""
    out = []
    for p in params:
        g = np.zeros_like(p, dtype=np.float64)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            plus = network.cost(params, X, Y)
            flat[i] = keep - h
            minus = network.cost(params, X, Y)
            flat[i] = keep
            gflat[i] = (plus - minus) / (2 * h)
        out.append(g)
    return out


def gradient_check(
    network: Network, params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray, h: float = 1e-6
) -> float:
    """Relative error between the backward pass and finite differences, over all parameters.

    Use a float64 network and small shapes: the cost is evaluated twice per parameter entry.
    """
    _, analytic = network.cost_and_grad(params, X, Y)
    numeric = numerical_gradient(network, params, X, Y, h)
    a = np.concatenate([g.ravel() for g in analytic]).astype(np.float64)
    n = np.concatenate([g.ravel() for g in numeric])
    return float(np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n)))
