"""The steps–samples trade-off of McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training"):
predictions from a measured noise scale, and the fit of measured steps. Plain functions of plain numbers.

At batch size B, with each size at its best learning rate, the steps S and samples E = S·B to reach a given
cost follow

    S(B) = S_min·(1 + B_crit / B)          E(B) = E_min·(1 + B / B_crit)          E_min = S_min·B_crit

so below B_crit doubling the batch nearly halves the steps, and above it the steps barely fall while the
samples double. The gradient noise scale B_noise (:mod:`optcore.noise`) predicts B_crit; one run to the
target at a pilot size B_p then gives S_min = S(B_p) / (1 + B_noise/B_p), and with each size's throughput
(samples per second) the seconds to the target, E(B) / throughput(B).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """The predicted steps, samples and seconds of one batch size (seconds NaN without a throughput)."""

    batch_size: int
    steps: float
    samples: float
    seconds: float


def s_min_from_pilot(pilot_steps: float, pilot_size: int, b_noise: float) -> float:
    """S_min = S(B_p) / (1 + B_noise / B_p): the fewest steps, from one run at the pilot size B_p."""
    return pilot_steps / (1.0 + b_noise / pilot_size)


def predict(
    s_min: float, b_crit: float, sizes: Sequence[int], throughput: Mapping[int, float] | None = None
) -> list[Prediction]:
    """S(B) = S_min·(1 + B_crit/B), E(B) = S(B)·B = E_min·(1 + B/B_crit), seconds = E(B) / throughput(B)."""
    out = []
    for b in sizes:
        steps = s_min * (1.0 + b_crit / b)
        samples = steps * b
        rate = (throughput or {}).get(b, math.nan)
        seconds = samples / rate if math.isfinite(rate) and rate > 0 else math.nan
        out.append(Prediction(b, steps, samples, seconds))
    return out


def fastest(predictions: Sequence[Prediction]) -> int | None:
    """The batch size of least predicted seconds (ties: the smaller size); None when no time is known."""
    timed = [p for p in predictions if math.isfinite(p.seconds)]
    return min(timed, key=lambda p: (p.seconds, p.batch_size)).batch_size if timed else None


@dataclass(frozen=True)
class Fit:
    """S_min and B_crit fitted to measured (B, S) pairs; ``rms_relative_error`` of the fitted S, and
    ``n`` the number of sizes used."""

    s_min: float
    b_crit: float
    rms_relative_error: float
    n: int

    @property
    def e_min(self) -> float:
        return self.s_min * self.b_crit

    def steps(self, batch_size: float) -> float:
        return self.s_min * (1.0 + self.b_crit / batch_size)


def fit_steps(sizes: Sequence[float], steps: Sequence[float]) -> Fit:
    """Least-squares fit of S = S_min·(1 + B_crit/B) to measured steps, in relative error.

    The model is linear in (S_min, S_min·B_crit) = (a, c): S = a + c/B. Steps span orders of magnitude over
    the sizes, so each residual is divided by its measured S (minimising Σ((S_i − a − c/B_i)/S_i)², an
    ordinary linear least squares on the rows (1/S_i, 1/(B_i·S_i)) → 1), which weights every size alike.
    Sizes whose steps are not finite and positive (the target not reached) are left out. Raises ValueError
    with fewer than two sizes left, or when the fitted S_min or B_crit is not positive (the steps do not
    fall with the batch size, so the model does not describe them).
    """
    b = np.asarray(sizes, dtype=float)
    s = np.asarray(steps, dtype=float)
    keep = np.isfinite(s) & (s > 0) & np.isfinite(b) & (b > 0)
    b, s = b[keep], s[keep]
    if b.size < 2 or np.unique(b).size < 2:
        raise ValueError(f"fitting S_min and B_crit needs steps at two sizes or more; got {b.size}")
    design = np.column_stack([1.0 / s, 1.0 / (b * s)])
    (a, c), *_ = np.linalg.lstsq(design, np.ones_like(s), rcond=None)
    if not (a > 0 and c > 0):
        raise ValueError(
            f"the measured steps do not fall with the batch size as S = S_min·(1 + B_crit/B) says "
            f"(fit: S_min = {a:.3g}, S_min·B_crit = {c:.3g})"
        )
    fitted = a + c / b
    rms = float(np.sqrt(np.mean(((s - fitted) / s) ** 2)))
    return Fit(float(a), float(c / a), rms, int(b.size))
