"""The gradient noise scale B_simple = tr Σ / |G|², measured while training (McCandlish et al. 2018,
"An Empirical Model of Large-Batch Training", arXiv:1812.06162, Appendix A).

G is the true gradient of the data loss and Σ the covariance of one example's gradient gᵢ around it. A step
at batch size B gives the squared norms of its per-example gradients, ‖gᵢ‖², and of their mean, the batch
gradient g_B (:meth:`optcore.Network.cost_grad_and_norms`; the data term only: the L2 term's gradient is the
same for every example, so it is not noise). For B independent examples

    E ‖gᵢ‖²  = |G|² + tr Σ              E ‖g_B‖² = |G|² + tr Σ / B

and solving the pair for the two unknowns gives unbiased estimates from one step (S = (1/B)·Σᵢ ‖gᵢ‖²):

    |G|²_est = (B·‖g_B‖² − S) / (B − 1)          tr Σ_est = (S − ‖g_B‖²) · B / (B − 1)

Each estimate is smoothed over the steps with the project's EWA (:class:`optcore.RunningEWA`), and the noise
scale is the ratio of the two smoothed values, not the average of per-step ratios: the per-step |G|²_est is
noisy and often near zero or negative, so its ratios are not (the paper's advice).

A batch of one row gives no estimate (B − 1 = 0) and is skipped. Training draws each epoch's batches without
replacement from N rows; then the expectations are those of tr Σ·N/(N − 1) and |G|² − tr Σ/(N − 1) (Σ the
covariance over the N rows), which differ from tr Σ and |G|² by a relative O(1/N).
"""

from __future__ import annotations

import math

import numpy as np

from optcore.ewa import RunningEWA


def noise_estimates(per_example_sq: np.ndarray, batch_sq: float) -> tuple[float, float]:
    """Unbiased one-step estimates ``(|G|², tr Σ)`` from ``per_example_sq`` (B,), the ‖gᵢ‖², and
    ``batch_sq`` = ‖g_B‖², g_B = (1/B)·Σᵢ gᵢ (formulas in the module docstring).

    Computed in float64 whatever the dtype of the norms. Raises ValueError for B < 2.
    """
    b = per_example_sq.shape[0]
    if b < 2:
        raise ValueError(f"the noise scale needs a batch of at least 2 rows; got {b}")
    mean_sq = float(np.mean(per_example_sq, dtype=np.float64))
    batch_sq = float(batch_sq)
    return (b * batch_sq - mean_sq) / (b - 1), (mean_sq - batch_sq) * b / (b - 1)


class NoiseScale:
    """The running noise scale: each step's estimates folded into one EWA each (``beta``, bias-corrected).

    ``grad_sq`` and ``trace_sigma`` are the smoothed |G|² and tr Σ (NaN before the first estimate);
    ``value`` is B_simple = trace_sigma / grad_sq, NaN while grad_sq ≤ 0 (noise still swamps the gradient).
    """

    def __init__(self, beta: float):
        self._grad_sq, self._trace_sigma = RunningEWA(beta), RunningEWA(beta)
        self.grad_sq = self.trace_sigma = math.nan

    def update(self, per_example_sq: np.ndarray, batch_sq: float) -> None:
        """Fold in one step's norms (see :func:`noise_estimates`); a batch of one row is skipped."""
        if per_example_sq.shape[0] < 2:
            return
        grad_sq, trace_sigma = noise_estimates(per_example_sq, batch_sq)
        self.grad_sq = self._grad_sq.update(grad_sq)
        self.trace_sigma = self._trace_sigma.update(trace_sigma)

    @property
    def value(self) -> float:
        return self.trace_sigma / self.grad_sq if self.grad_sq > 0 else math.nan

    def record_fields(self) -> dict[str, float]:
        """The values as :class:`optcore.EpochRecord` fields."""
        return {"noise_scale": self.value, "noise_grad_sq": self.grad_sq, "noise_trace_sigma": self.trace_sigma}
