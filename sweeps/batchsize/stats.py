"""The statistics of a batch-size comparison: per-size summaries over seeds and the noise-aware choice.

Plain functions of plain numbers (no MLflow, no Optuna), so each one can be checked against its formula.
A size's runs are its repeats: the same setting trained with different seeds, seed r for repeat r of every
size, so the sizes are compared pairwise on per-seed differences (:mod:`sweeps.results.comparison` holds the test,
Holm's correction and the tied set; this module adds what is particular to batch sizes: throughput, epochs
and seconds to a target cost, and the fastest of the tied sizes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sweeps.results.comparison import ALPHA, CONFIDENCE, Comparison, compare, mean_interval

__all__ = ["ALPHA", "CONFIDENCE", "Choice", "RunResult", "SizeStats", "choose", "first_reaching", "size_stats"]


@dataclass(frozen=True)
class RunResult:
    """One training run of one batch size with one seed.

    ``val_cost`` and ``epoch_seconds`` hold one value per epoch (seconds of training steps only, evaluation
    excluded); ``failed`` is the reason a run did not finish (its cost diverged), else None. ``samples`` is
    the number of training rows stepped on (default: ``n_train`` per epoch; less when a time budget ended
    the last epoch part-way). ``lr`` is the learning rate it trained at (a repeat of 0 marks an lr search
    trial of ``--lr-rule tuned``, which is not one of the compared runs).
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
    lr: float | None = None
    final_train_cost: float = math.nan  # the last epoch's training cost (an objective a sweep may have)

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
    def best_val_cost(self) -> float:
        """The lowest validation cost of any epoch (the objective ``min_val_cost``, as on optcore's History)."""
        return min(self.val_cost) if self.val_cost else math.nan

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
    """The sizes compared on their final validation costs (see :class:`sweeps.results.comparison.Comparison`) and
    ``fastest_tied``: the size tied with the best that has the highest pooled throughput."""

    comparison: Comparison
    fastest_tied: int | None


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


def choose(
    stats: Sequence[SizeStats], costs: Mapping[int, Sequence[float]], *, paired: bool, alpha: float = ALPHA
) -> Choice:
    """Compare the sizes' final costs and name the fastest of those tied with the best.

    ``costs`` maps each size to its repeats' final validation costs, NaN for a run that diverged (its size
    cannot be chosen), in repeat order; ``paired`` says repeat r used the same seed for every size. The best
    has the lowest mean (ties: the smaller size); the fastest tied size has the highest pooled throughput
    (ties: the smaller size).
    """
    sizes = sorted(s.batch_size for s in stats)
    comparison = compare([costs[s] for s in sizes], paired=paired, labels=sizes, alpha=alpha)
    speed = {s.batch_size: s.throughput if math.isfinite(s.throughput) else -math.inf for s in stats}
    fastest = max(comparison.tied, key=lambda s: (speed[s], -s), default=None)
    return Choice(comparison, fastest)
