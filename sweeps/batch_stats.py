"""The statistics of a batch-size comparison: per-size summaries over seeds and the noise-aware choice.

Plain functions of plain numbers (no MLflow, no Optuna), so each one can be checked against its formula.
A size's runs are its repeats: the same setting trained with different seeds. The rule is a screening rule,
not a corrected multiple-comparison procedure: the best mean is tested against each other size in turn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class RunResult:
    """One training run of one batch size with one seed.

    ``val_cost`` and ``epoch_seconds`` hold one value per epoch (seconds of training steps only, evaluation
    excluded); ``failed`` is the reason a run did not finish (its cost diverged), else None. ``samples`` is
    the number of training rows stepped on (default: ``n_train`` per epoch; less when a time budget ended
    the last epoch part-way).
    """

    batch_size: int
    repeat: int
    seed: int
    run_id: str
    n_train: int
    val_cost: tuple[float, ...]
    epoch_seconds: tuple[float, ...]
    failed: str | None = None
    samples: int | None = None

    @property
    def epochs_run(self) -> int:
        """Epochs recorded, a partial last one included (one point per epoch on every curve)."""
        return len(self.val_cost)

    @property
    def samples_seen(self) -> int:
        return self.n_train * self.epochs_run if self.samples is None else self.samples

    @property
    def epochs_trained(self) -> float:
        """Passes over the training split: ``samples_seen / n_train`` (fractional after a time budget)."""
        return self.samples_seen / self.n_train

    @property
    def final_val_cost(self) -> float:
        return self.val_cost[-1] if self.val_cost and self.failed is None else math.nan

    @property
    def train_seconds(self) -> float:
        return float(sum(self.epoch_seconds))

    @property
    def throughput(self) -> float:
        """Training samples per second: ``samples_seen / train_seconds``."""
        seconds = self.train_seconds
        return self.samples_seen / seconds if seconds > 0 else math.nan


@dataclass(frozen=True)
class SizeStats:
    """One batch size over its repeats. Means are over the finished runs; ``n_failed`` did not finish.

    ``ci_low``/``ci_high`` is the 95% t-interval of the mean final validation cost. ``throughput`` pools the
    runs, Σ samples / Σ seconds, so it agrees with ``epochs_run`` (mean passes over the data) and
    ``train_seconds`` (mean seconds) and one unusually quick run cannot inflate it. With a target cost,
    ``n_reached`` runs reached it and ``epochs_to_target``/``seconds_to_target`` are means over those runs.
    """

    batch_size: int
    n_runs: int
    n_failed: int
    mean_cost: float
    std_cost: float
    ci_low: float
    ci_high: float
    throughput: float
    epochs_run: float
    train_seconds: float
    n_reached: int | None = None
    epochs_to_target: float | None = None
    seconds_to_target: float | None = None

    @property
    def eligible(self) -> bool:
        """Whether the size may be chosen: every repeat finished, so its mean and spread are honest."""
        return self.n_failed == 0 and self.n_runs > 0


@dataclass(frozen=True)
class Choice:
    """The chosen size (lowest mean cost), how it compares with the runner-up, and the sizes tied with it.

    ``p_value`` is Welch's two-sided p between the chosen size and the runner-up (None with one size);
    ``tied`` are the sizes not distinguishable from the chosen one (itself included), ``fastest_tied`` the
    one of them with the highest throughput.
    """

    chosen: int | None
    runner_up: int | None
    p_value: float | None
    distinguishable: bool | None
    tied: tuple[int, ...]
    fastest_tied: int | None


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, s, low, high)``: the sample mean, its standard deviation (ddof 1) and the t-interval

        mean ± t_{(1+confidence)/2, n-1} · s / √n.

    One value has no spread: s and the interval are NaN. Zero spread gives the interval (mean, mean).
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan, math.nan
    s = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1)) * s / math.sqrt(x.size)
    return mean, s, mean - half, mean + half


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's two-sided p-value for equal means of ``a`` and ``b`` (variances not assumed equal):

        t = (ā − b̄) / √(s_a²/n_a + s_b²/n_b),
        ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)),
        p = 2 · P(T_ν > |t|).

    Both samples without spread: p is 1.0 when the means are equal and 0.0 otherwise (no noise to hide a
    difference). Raises ValueError when a sample has fewer than 2 values.
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per sample; got {x.size} and {y.size}")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    if va + vb == 0:
        return 1.0 if diff == 0 else 0.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return float(2 * stats.t.sf(abs(t), df))


def first_reaching(
    val_cost: Sequence[float], epoch_seconds: Sequence[float], target: float
) -> tuple[int, float] | None:
    """``(epochs, seconds)`` to the first epoch whose validation cost is ≤ ``target``, or None if none is.

    Epochs count from 1; seconds are the training seconds of the epochs up to and including that one.
    """
    for i, cost in enumerate(val_cost):
        if cost <= target:
            return i + 1, float(sum(epoch_seconds[: i + 1]))
    return None


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _pooled_throughput(runs: Sequence[RunResult]) -> float:
    seconds = sum(r.train_seconds for r in runs)
    return sum(r.samples_seen for r in runs) / seconds if seconds > 0 else math.nan


def size_stats(batch_size: int, runs: Sequence[RunResult], target_cost: float | None = None) -> SizeStats:
    """Summarise the repeats of one batch size (see :class:`SizeStats`)."""
    done = [r for r in runs if r.failed is None]
    mean, std, low, high = mean_interval([r.final_val_cost for r in done])
    reached: list[tuple[float, float]] = []
    if target_cost is not None:
        for r in done:
            if (hit := first_reaching(r.val_cost, r.epoch_seconds, target_cost)) is not None:
                # a hit in a partial last epoch (a time budget) counts that epoch's fraction only
                reached.append((min(hit[0], r.epochs_trained), hit[1]))
    return SizeStats(
        batch_size=batch_size,
        n_runs=len(runs),
        n_failed=len(runs) - len(done),
        mean_cost=mean,
        std_cost=std,
        ci_low=low,
        ci_high=high,
        throughput=_pooled_throughput(done),
        epochs_run=_mean([r.epochs_trained for r in done]),
        train_seconds=_mean([r.train_seconds for r in done]),
        n_reached=None if target_cost is None else len(reached),
        epochs_to_target=None if not reached else _mean([e for e, _ in reached]),
        seconds_to_target=None if not reached else _mean([s for _, s in reached]),
    )


def choose(stats: Sequence[SizeStats], costs: Mapping[int, Sequence[float]], alpha: float = ALPHA) -> Choice:
    """Pick the eligible size with the lowest mean final cost (ties: the smaller size) and test it.

    ``costs`` maps each size to its repeats' final validation costs. The chosen size is distinguishable
    from the runner-up (second-lowest mean) when Welch's p < ``alpha``; every size with p ≥ ``alpha``
    against the chosen one is tied with it, and the fastest tied size has the highest (pooled) throughput.
    """
    ranked = sorted((s for s in stats if s.eligible), key=lambda s: (s.mean_cost, s.batch_size))
    if not ranked:
        return Choice(None, None, None, None, (), None)
    best = ranked[0]
    if len(ranked) == 1 or len(costs[best.batch_size]) < 2:
        return Choice(best.batch_size, None, None, None, (best.batch_size,), best.batch_size)
    p = {s.batch_size: welch_p_value(costs[best.batch_size], costs[s.batch_size]) for s in ranked[1:]}
    runner_up = ranked[1].batch_size
    tied = [best] + [s for s in ranked[1:] if not p[s.batch_size] < alpha]
    fastest = max(tied, key=lambda s: (s.throughput if math.isfinite(s.throughput) else -math.inf, -s.batch_size))
    return Choice(
        chosen=best.batch_size,
        runner_up=runner_up,
        p_value=p[runner_up],
        distinguishable=p[runner_up] < alpha,
        tied=tuple(sorted(s.batch_size for s in tied)),
        fastest_tied=fastest.batch_size,
    )
