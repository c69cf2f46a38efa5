"""Steps to a target cost: train until the validation cost first reaches C, and count what it took.

The measurement behind the critical batch size (McCandlish et al. 2018; Shallue et al. 2018): for a batch
size B, the number of optimisation steps S(B) (and samples E = S·B, and training seconds) needed to reach a
given validation cost. The validation cost is checked on a geometric grid of steps, each check at least
``resolution`` (relative) after the previous one, so a run of S steps is evaluated about
log(S)/log(1 + resolution) times and S is known to within that relative resolution, an error every batch
size shares alike. The learning rate is constant (a schedule over a fixed length has no meaning when the
length is what is measured).

    result = steps_to_target(ds, net, opt, batch_size=64, target=0.3, max_steps=5000, seed=0)
    result.reached, result.steps, result.samples, result.seconds

With ``noise_scale=True`` the run also measures the gradient noise scale (:mod:`optcore.noise`): its
``noise_scale`` is the ratio of the run's means of the unbiased per-step estimates, mean(tr Σ) / mean(|G|²),
numerator and denominator averaged separately as the paper advises (a mean of per-step ratios is dominated by
the steps where the |G|² estimate nears zero, late in a run); the EWA-smoothed value (``noise_beta``) is
recorded at every check and at the end. ``target=None`` never evaluates: the run trains for ``max_steps`` or
``max_seconds`` (a throughput measurement).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from optcore.batches import minibatches
from optcore.data import Dataset
from optcore.errors import OptcoreError
from optcore.network import Network, pack
from optcore.noise import NoiseScale, noise_estimates
from optcore.optimizers import Optimizer
from optcore.train import seeded_generators


@dataclass(frozen=True)
class ToTarget:
    """One run to a target cost.

    ``reached`` says whether the validation cost got to ``target``; then ``steps`` is the first checked step
    where it did, else the steps the run was allowed. ``samples`` are the rows stepped on, ``seconds`` the
    training steps' wall-clock time (evaluation excluded). ``diverged``: the cost became NaN or infinite.
    ``checks`` holds ``(step, validation cost)`` at every evaluation; ``noise`` ``(step, smoothed B_simple)`` at
    every check when measured. ``noise_scale`` is mean(tr Σ)/mean(|G|²) over the run's steps (NaN when the
    mean |G|² is not positive), ``noise_scale_end`` the smoothed value at the last step (both NaN when not
    measured).
    """

    batch_size: int
    target: float | None
    reached: bool
    steps: int
    samples: int
    seconds: float
    cost: float
    diverged: bool = False
    noise_scale: float = math.nan
    noise_scale_end: float = math.nan
    checks: tuple[tuple[int, float], ...] = field(default=(), repr=False)
    noise: tuple[tuple[int, float], ...] = field(default=(), repr=False)

    @property
    def throughput(self) -> float:
        """Training samples per second: ``samples / seconds``."""
        return self.samples / self.seconds if self.seconds > 0 else math.nan


def next_check(step: int, resolution: float) -> int:
    """The step of the check after one at ``step``: ⌈step·(1 + resolution)⌉, and at least ``step + 1``."""
    return max(step + 1, math.ceil(step * (1.0 + resolution)))


# Overflow on the way to a NaN cost is reported as a diverged run, not as numpy warnings.
@np.errstate(over="ignore", invalid="ignore")
def steps_to_target(
    dataset: Dataset,
    network: Network,
    optimizer: Optimizer,
    *,
    batch_size: int,
    target: float | None,
    max_steps: int,
    seed: int = 0,
    max_seconds: float | None = None,
    resolution: float = 0.02,
    noise_scale: bool = False,
    noise_beta: float = 0.99,
) -> ToTarget:
    """Train at a constant ``optimizer.lr`` until the validation cost is ≤ ``target`` (module docstring).

    Batches are drawn as :func:`optcore.train` draws them (each epoch a fresh permutation, the same ``seed``
    the same initial parameters and order), for at most ``max_steps`` steps and ``max_seconds`` seconds of
    training steps. A diverged run returns ``diverged=True, reached=False``; it does not raise.
    Raises OptcoreError for a batch size outside [1, n_train], ``max_steps`` < 1, a target that is not a
    finite number, ``resolution`` ≤ 0 or ``noise_beta`` outside [0, 1).
    """
    if not 1 <= batch_size <= dataset.n_train:
        raise OptcoreError(f"batch_size must be in [1, {dataset.n_train}] (the training set size); got {batch_size}")
    if int(max_steps) != max_steps or max_steps < 1:
        raise OptcoreError(f"max_steps must be a whole number ≥ 1; got {max_steps}")
    if target is not None and not math.isfinite(target):
        raise OptcoreError(f"target must be a finite cost; got {target}")
    if not resolution > 0:
        raise OptcoreError(f"resolution must be > 0; got {resolution}")
    if not 0 <= noise_beta < 1:
        raise OptcoreError(f"noise_beta must be in [0, 1); got {noise_beta}")
    budget = math.inf if max_seconds is None else max_seconds

    data = dataset.astype(network.dtype)
    init_rng, shuffle_rng = seeded_generators(seed)
    flat, params = pack(network.init(init_rng))
    flat_grads, grads = pack(network.new_grads(params))
    state = optimizer.init([flat])
    lr = optimizer.lr
    noise = NoiseScale(noise_beta) if noise_scale else None
    sum_grad_sq = sum_trace = 0.0
    checks: list[tuple[int, float]] = []
    noise_curve: list[tuple[int, float]] = []
    step = samples = 0
    seconds = 0.0
    check_at = 1
    cost = math.nan

    def finish(reached: bool, diverged: bool = False) -> ToTarget:
        end = noise.value if noise is not None else math.nan
        return ToTarget(
            batch_size,
            target,
            reached,
            step,
            samples,
            seconds,
            cost,
            diverged,
            sum_trace / sum_grad_sq if sum_grad_sq > 0 else math.nan,
            end,
            tuple(checks),
            tuple(noise_curve),
        )

    while True:
        for xb, yb in minibatches(data.X_train, data.Y_train, batch_size, shuffle_rng):
            start = time.perf_counter()
            if noise is None:
                train_cost, _ = network.cost_and_grad(params, xb, yb, grads, n_train=data.n_train)
            else:
                train_cost, _, per_example_sq, batch_sq = network.cost_grad_and_norms(
                    params, xb, yb, grads, n_train=data.n_train
                )
                noise.update(per_example_sq, batch_sq)
                if xb.shape[0] > 1:
                    grad_sq, trace = noise_estimates(per_example_sq, batch_sq)
                    sum_grad_sq, sum_trace = sum_grad_sq + grad_sq, sum_trace + trace
            if not math.isfinite(train_cost):
                return finish(False, diverged=True)
            optimizer.update([flat], [flat_grads], state, lr)
            seconds += time.perf_counter() - start
            step += 1
            samples += xb.shape[0]
            if target is not None and (step >= check_at or step >= max_steps):
                cost, _ = network.evaluate(params, data.X_val, data.Y_val)
                checks.append((step, float(cost)))
                if noise is not None:
                    noise_curve.append((step, noise.value))
                if not math.isfinite(cost):
                    return finish(False, diverged=True)
                if cost <= target:
                    return finish(True)
                check_at = next_check(step, resolution)
            if step >= max_steps or seconds >= budget:
                return finish(False)
