"""The batch-size statistics: intervals and Welch's test against scipy, targets, and the noise-aware choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sweeps.batch_stats import (
    RunResult,
    SizeStats,
    choose,
    first_reaching,
    mean_interval,
    size_stats,
    welch_p_value,
)

SAMPLES = [
    [0.31, 0.29, 0.35],
    [1.0, 2.0],
    [0.123, 0.125, 0.124, 0.2, 0.05],
    list(np.random.default_rng(0).normal(0.4, 0.05, size=8)),
]


@pytest.mark.parametrize("values", SAMPLES)
def test_mean_interval_is_scipys_t_interval(values):
    mean, s, low, high = mean_interval(values)
    n = len(values)
    assert mean == pytest.approx(np.mean(values))
    assert s == pytest.approx(np.std(values, ddof=1))
    expected = stats.t.interval(0.95, n - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected)


def test_mean_interval_of_one_value_has_no_spread_and_of_equal_values_no_width():
    mean, s, low, high = mean_interval([0.5])
    assert mean == 0.5 and math.isnan(s) and math.isnan(low) and math.isnan(high)
    assert mean_interval([0.25, 0.25, 0.25]) == (0.25, 0.0, 0.25, 0.25)


@pytest.mark.parametrize(("a", "b"), [(SAMPLES[0], SAMPLES[2]), (SAMPLES[1], SAMPLES[3]), ([0.1, 0.3], [0.2, 0.21])])
def test_welch_p_value_is_scipys(a, b):
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p_value(a, b) == pytest.approx(expected, rel=1e-9)
    assert welch_p_value(b, a) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0.0, 10.0), min_size=2, max_size=6),
    st.lists(st.floats(0.0, 10.0), min_size=2, max_size=6),
)
def test_welch_p_value_matches_scipy_wherever_scipy_defines_it(a, b):
    if min(np.var(a), np.var(b)) < 1e-9:
        return  # (near) zero spread: scipy's p is NaN or rests on rounding error; ours is defined (below)
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p_value(a, b) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_welch_without_spread_is_certain_and_needs_two_values():
    assert welch_p_value([0.2, 0.2], [0.2, 0.2]) == 1.0
    assert welch_p_value([0.2, 0.2], [0.3, 0.3]) == 0.0
    with pytest.raises(ValueError, match="at least 2 values"):
        welch_p_value([0.2], [0.3, 0.4])


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


def _stats(size: int, costs, throughput: float, failed: int = 0) -> SizeStats:
    mean, s, low, high = mean_interval(costs)
    return SizeStats(size, len(costs) + failed, failed, mean, s, low, high, throughput, 10, 1.0)


def test_a_clear_winner_is_distinguishable():
    costs = {64: [0.10, 0.11, 0.12], 128: [0.30, 0.31, 0.29], 256: [0.50, 0.52, 0.51]}
    rows = [_stats(64, costs[64], 1e4), _stats(128, costs[128], 2e4), _stats(256, costs[256], 4e4)]
    choice = choose(rows, costs)
    assert (choice.chosen, choice.runner_up, choice.distinguishable) == (64, 128, True)
    assert choice.p_value == pytest.approx(stats.ttest_ind(costs[64], costs[128], equal_var=False).pvalue)
    assert choice.tied == (64,) and choice.fastest_tied == 64


def test_within_noise_the_fastest_tied_size_is_named():
    costs = {64: [0.20, 0.30, 0.25], 128: [0.21, 0.33, 0.27], 256: [0.24, 0.31, 0.26], 512: [0.9, 0.91, 0.92]}
    rows = [_stats(s, c, t) for (s, c), t in zip(costs.items(), (1e4, 2e4, 3e4, 9e4), strict=True)]
    choice = choose(rows, costs)
    assert choice.chosen == 64 and choice.distinguishable is False
    assert choice.p_value > 0.05
    assert choice.tied == (64, 128, 256)  # 512 is clearly worse, so its throughput does not count
    assert choice.fastest_tied == 256


def test_sizes_with_a_diverged_run_cannot_be_chosen():
    costs = {64: [0.1, 0.1], 128: [0.3, 0.31], 256: [0.5, 0.52]}
    rows = [_stats(64, costs[64], 1e4, failed=1), _stats(128, costs[128], 2e4), _stats(256, costs[256], 3e4)]
    assert choose(rows, costs).chosen == 128
    assert choose(rows[:1], costs).chosen is None
    single = choose(rows[1:2], costs)
    assert (single.chosen, single.runner_up, single.p_value, single.distinguishable) == (128, None, None, None)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 5.0), min_size=2, max_size=4), min_size=1, max_size=5))
def test_the_chosen_size_has_the_lowest_mean_and_the_fastest_is_tied(samples):
    costs = {8 * (i + 1): c for i, c in enumerate(samples)}
    rows = [_stats(s, c, float(1000 + s * (i % 3))) for i, (s, c) in enumerate(costs.items())]
    choice = choose(rows, costs)
    means = {r.batch_size: r.mean_cost for r in rows}
    assert means[choice.chosen] == min(means.values())
    assert choice.chosen in choice.tied and choice.fastest_tied in choice.tied
    speed = {r.batch_size: r.throughput for r in rows}
    assert speed[choice.fastest_tied] == max(speed[s] for s in choice.tied)
