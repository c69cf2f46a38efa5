"""The batch-size statistics: per-size summaries, targets, and the choice of a size (the test itself, Holm's
correction and the tied set are checked in test_comparison.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sweeps.batchsize.stats import RunResult, SizeStats, choose, first_reaching, size_stats
from sweeps.results.comparison import holm, mean_interval


@pytest.mark.parametrize(
    ("costs", "seconds", "target", "expected"),
    [
        ([0.9, 0.5, 0.3, 0.2], [1.0, 2.0, 3.0, 4.0], 0.3, (3, 6.0)),  # ≤, not <
        ([0.9, 0.5, 0.3, 0.2], [1.0, 2.0, 3.0, 4.0], 1.0, (1, 1.0)),
        ([0.9, 0.5], [1.0, 2.0], 0.1, None),
        ([0.4, 0.2, 0.5], [0.5, 0.5, 0.5], 0.25, (2, 1.0)),  # the first epoch, not the best one
    ],
)
def test_first_reaching(costs, seconds, target, expected):
    assert first_reaching(costs, seconds, target) == expected


def _run(size: int, repeat: int, costs, seconds, failed=None, n_train=100) -> RunResult:
    return RunResult(size, repeat, repeat, f"r{size}-{repeat}", n_train, tuple(costs), tuple(seconds), failed)


def test_size_stats_throughput_targets_and_failures():
    runs = [
        _run(32, 1, [0.5, 0.3, 0.2], [0.1, 0.1, 0.2]),
        _run(32, 2, [0.6, 0.4, 0.25], [0.1, 0.1, 0.1]),
        _run(32, 3, [0.7, math.nan], [0.1, 0.1], failed="cost diverged at epoch 2"),
    ]
    row = size_stats(32, runs, target_cost=0.3)
    assert (row.n_runs, row.n_failed, row.eligible) == (3, 1, False)
    assert row.mean_cost == pytest.approx(0.225)
    assert row.std_cost == pytest.approx(np.std([0.2, 0.25], ddof=1))
    # samples per second, pooled over the finished runs: Σ samples / Σ seconds, not the mean of the rates
    assert row.throughput == pytest.approx((300 + 300) / (0.4 + 0.3))
    assert row.epochs_run == 3 and row.train_seconds == pytest.approx(0.35)
    assert row.throughput == pytest.approx(100 * row.epochs_run / row.train_seconds)
    # both finished runs reach 0.3: at epoch 2 after 0.2 s, and at epoch 3 after 0.3 s
    assert row.n_reached == 2 and row.epochs_to_target == 2.5 and row.seconds_to_target == pytest.approx(0.25)
    assert size_stats(32, runs[:2]).n_reached is None


def test_a_time_budget_run_counts_the_samples_of_its_partial_last_epoch():
    # 2 full epochs of 100 rows and 40 rows of a third, in 0.5 s
    run = RunResult(32, 1, 1, "r", 100, (0.5, 0.4, 0.35), (0.2, 0.2, 0.1), samples=240)
    assert (run.epochs_run, run.samples_seen, run.epochs_trained) == (3, 240, 2.4)
    assert run.throughput == pytest.approx(240 / 0.5)
    row = size_stats(32, [run, _run(32, 2, [0.4, 0.3], [0.25, 0.25])])
    assert row.epochs_run == pytest.approx((2.4 + 2) / 2) and row.throughput == pytest.approx(440 / 1.0)
    # reaching 0.35 in the partial third epoch took 2.4 epochs, not 3; 0.4 in the second took 2
    assert size_stats(32, [run], target_cost=0.35).epochs_to_target == pytest.approx(2.4)
    assert size_stats(32, [run], target_cost=0.4).epochs_to_target == 2


def _stats(size: int, costs, throughput: float) -> SizeStats:
    done = [c for c in costs if math.isfinite(c)]
    mean, s, low, high = mean_interval(done)
    return SizeStats(size, len(costs), len(costs) - len(done), mean, s, low, high, throughput, 10, 1.0)


# The README's example (digits, seeds 1-3, the same seed for every size in a repeat).
DIGITS = {
    64: [0.13519694010416666, 0.14946492513020834, 0.18992919921875],
    128: [0.15658637152777777, 0.17808430989583332, 0.20557047526041666],
    256: [0.21364237467447916, 0.2348202175564236, 0.24872538248697917],
    512: [0.34178738064236114, 0.3636847601996528, 0.3584072536892361],
}


def test_the_paired_seeds_tell_the_winner_from_the_faster_runner_up():
    rows = [_stats(s, c, t) for (s, c), t in zip(DIGITS.items(), (4e5, 6.6e5, 8.9e5, 1.2e6), strict=True)]
    choice = choose(rows, DIGITS, paired=True)
    c = choice.comparison
    assert (c.best, c.runner_up, c.distinguishable, c.tied, choice.fastest_tied) == (64, 128, True, (64,), 64)
    # the p-value is the paired t-test's, Holm-corrected over the 6 pairs (here the largest raw p is 64 vs 128)
    raw = [stats.ttest_rel(DIGITS[a], DIGITS[b]).pvalue for a, b in itertools.combinations(DIGITS, 2)]
    assert c.row(128).p_holm == pytest.approx(max(holm(raw)))
    assert c.row(128).p_holm == pytest.approx(stats.ttest_rel(DIGITS[64], DIGITS[128]).pvalue)
    # as independent samples (Welch) 128 and 256 would be tied with 64, and the faster 256 recommended
    unpaired = choose(rows, DIGITS, paired=False)
    assert unpaired.comparison.tied == (64, 128, 256) and unpaired.fastest_tied == 256


def test_within_noise_the_fastest_tied_size_is_named():
    costs = {64: [0.20, 0.30, 0.25], 128: [0.23, 0.26, 0.29], 256: [0.24, 0.31, 0.24], 512: [0.9, 0.91, 0.92]}
    rows = [_stats(s, c, t) for (s, c), t in zip(costs.items(), (1e4, 2e4, 3e4, 9e4), strict=True)]
    choice = choose(rows, costs, paired=True)
    assert choice.comparison.best == 64 and choice.comparison.distinguishable is False
    assert sorted(choice.comparison.tied) == [64, 128, 256]  # 512 is clearly worse: its speed does not count
    assert choice.fastest_tied == 256


def test_sizes_with_a_diverged_run_cannot_be_chosen():
    costs = {64: [0.1, math.nan], 128: [0.3, 0.31], 256: [0.5, 0.52]}
    rows = [_stats(s, c, t) for (s, c), t in zip(costs.items(), (1e4, 2e4, 3e4), strict=True)]
    assert not rows[0].eligible
    choice = choose(rows, costs, paired=True)
    assert (choice.comparison.best, choice.comparison.runner_up) == (128, 256) and 64 not in choice.comparison.tied
    single = choose(rows[:2], costs, paired=True)
    assert (single.comparison.best, single.comparison.runner_up, single.fastest_tied) == (128, None, 128)
    assert choose(rows[:1], costs, paired=True).fastest_tied is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 5.0), min_size=3, max_size=3), min_size=1, max_size=5))
def test_the_fastest_size_is_tied_with_the_chosen_one(samples):
    costs = {8 * (i + 1): c for i, c in enumerate(samples)}
    rows = [_stats(s, c, float(1000 + s * (i % 3))) for i, (s, c) in enumerate(costs.items())]
    choice = choose(rows, costs, paired=True)
    means = {r.batch_size: r.mean_cost for r in rows}
    assert means[choice.comparison.best] == min(means.values())
    assert choice.fastest_tied in choice.comparison.tied
    speed = {r.batch_size: r.throughput for r in rows}
    assert speed[choice.fastest_tied] == max(speed[s] for s in choice.comparison.tied)
