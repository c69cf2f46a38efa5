"""Comparing settings over seeds: the tests against scipy, Holm's correction against its formula, the tied set
and the verdict in every case, and the error rates by simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sweeps.results.comparison import compare, holm, mean_interval, paired_p_value, welch_p_value

SAMPLES = [
    [0.31, 0.29, 0.35],
    [1.0, 2.0],
    [0.123, 0.125, 0.124, 0.2, 0.05],
    list(np.random.default_rng(0).normal(0.4, 0.05, size=8)),
]

# The README's example: final validation costs of batch sizes 64, 128, 256, 512 on digits, seeds 1-3
# (repeat r used the same seed for every size, so the columns are paired).
DIGITS = {
    64: [0.13519694010416666, 0.14946492513020834, 0.18992919921875],
    128: [0.15658637152777777, 0.17808430989583332, 0.20557047526041666],
    256: [0.21364237467447916, 0.2348202175564236, 0.24872538248697917],
    512: [0.34178738064236114, 0.3636847601996528, 0.3584072536892361],
}


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


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 10.0)), min_size=2, max_size=8))
def test_paired_p_value_is_scipys_ttest_rel(pairs):
    a, b = (list(x) for x in zip(*pairs, strict=True))
    d = np.subtract(a, b)
    if np.std(d) < 1e-9 * max(1.0, np.abs(d).max()):
        return  # (near) constant differences: scipy's p is NaN or rounding error; ours is defined (below)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))  # the formula, then scipy
    assert paired_p_value(a, b) == pytest.approx(2 * stats.t.sf(abs(t), d.size - 1), rel=1e-9, abs=1e-15)
    assert paired_p_value(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-6, abs=1e-12)


def test_paired_differences_without_spread_are_certain_and_lengths_must_match():
    assert paired_p_value([1.0, 2.0, 3.0], [1.25, 2.25, 3.25]) == 0.0  # the same gap on every seed
    assert paired_p_value([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    with pytest.raises(ValueError, match="same length ≥ 2; got 3 and 2"):
        paired_p_value([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="same length ≥ 2; got 1 and 1"):
        paired_p_value([1.0], [2.0])


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max 0.02, 0.03, 0.06, 0.06
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        ([0.5, 0.4], [0.8, 0.8]),
        ([0.3, 0.6, 0.01], [0.6, 0.6, 0.03]),
        ([0.9, 0.8], [1.0, 1.0]),  # capped at 1
        ([0.02], [0.02]),
        ([], []),
    ],
)
def test_holm_adjusted_p_values(p, expected):
    assert holm(p) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------------
# compare: the best, Holm over all pairs, the tied set, the verdict.


def test_the_readme_example_is_decided_by_the_paired_test_over_all_pairs():
    result = compare(list(DIGITS.values()), paired=True, labels=list(DIGITS))
    pairs = list(itertools.combinations(DIGITS, 2))
    raw = [stats.ttest_rel(DIGITS[a], DIGITS[b]).pvalue for a, b in pairs]
    corrected = dict(zip(pairs, holm(raw), strict=True))
    assert (result.best, result.runner_up, result.n_pairs) == (64, 128, 6)
    for size in (128, 256, 512):
        row = result.row(size)
        assert row.p_value == pytest.approx(stats.ttest_rel(DIGITS[64], DIGITS[size]).pvalue)
        assert row.p_holm == pytest.approx(corrected[(64, size)])
    assert result.row(128).p_holm == pytest.approx(0.0282, abs=1e-4)  # the number: Welch says 0.371
    assert result.tied == (64,) and result.distinguishable is True
    assert result.verdict("batch size", "mean validation cost") == (
        "batch size 64 has the lowest mean validation cost, distinguishable from the runner-up 128 "
        "(p = 0.0282 < 0.05) and from every other batch size "
        "(paired t-test on per-seed differences, Holm-corrected over 6 pairs, alpha 0.05)"
    )
    # the same numbers as independent samples: Welch cannot see the difference the seeds hide
    welch = compare(list(DIGITS.values()), paired=False, labels=list(DIGITS))
    assert welch.test == "Welch's t-test" and welch.distinguishable is False and 128 in welch.tied
    assert welch.row(128).p_value == pytest.approx(stats.ttest_ind(DIGITS[64], DIGITS[128], equal_var=False).pvalue)


def test_a_runner_up_that_is_distinguishable_while_a_noisier_size_is_tied_is_said():
    values = {
        64: [1.0, 2.0, 3.0],
        128: [1.1, 2.1, 3.11],  # the runner-up: always a little worse, on every seed
        512: [0.5, 4.0, 2.5],  # further away on average, but better than 64 on one seed
    }
    result = compare(list(values.values()), paired=True, labels=list(values))
    assert (result.best, result.runner_up, result.distinguishable) == (64, 128, True)
    assert result.tied == (64, 512) and not result.row(128).tied and result.row(512).tied
    p128, p512 = result.row(128).p_holm, result.row(512).p_holm
    assert result.verdict("batch size", "mean cost") == (
        f"batch size 64 has the lowest mean cost, distinguishable from the runner-up 128 (p = {p128:.3g} < 0.05) "
        f"but NOT from 512 (p = {p512:.3g}), whose difference from it varies more from seed to seed "
        "(paired t-test on per-seed differences, Holm-corrected over 3 pairs, alpha 0.05); tied with it: 64, 512"
    )


def test_within_noise_of_the_runner_up_lists_the_tied_settings():
    result = compare([[0.20, 0.30, 0.25], [0.23, 0.26, 0.29], [0.9, 0.91, 0.92]], paired=True)
    assert (result.best, result.runner_up, result.distinguishable, result.tied) == (0, 1, False, (0, 1))
    p = result.row(1).p_holm
    assert result.verdict() == (
        f"setting 0 has the lowest mean objective, but is within noise of the runner-up 1 (p = {p:.3g} ≥ 0.05; "
        "paired t-test on per-seed differences, Holm-corrected over 3 pairs, alpha 0.05); tied with it: 0, 1"
    )


def test_diverged_runs_make_a_setting_ineligible_but_it_is_still_summarised():
    result = compare([[0.1, math.nan, 0.1], [0.3, 0.31, 0.29], [0.5, 0.52, 0.5]], paired=True, labels=[8, 16, 32])
    diverged = result.row(8)
    assert (diverged.n, diverged.n_failed, diverged.eligible, diverged.tied) == (2, 1, False, False)
    assert diverged.mean == pytest.approx(0.1) and math.isnan(diverged.p_holm)
    assert (result.best, result.runner_up, result.n_pairs) == (16, 32, 1)  # 8 is neither chosen nor tested
    assert compare([[math.inf, 0.1], [0.2, math.nan]], paired=True).verdict() == (
        "no setting finished all its runs (each had a run that diverged or is missing)"
    )
    assert compare([[0.1, 0.2], [0.2, math.nan]], paired=True, labels=["a", "b"]).verdict() == (
        "setting a is the only setting that finished all its runs; nothing to compare it with"
    )


def test_one_seed_cannot_tell_settings_apart():
    result = compare([[0.3], [0.1], [0.2]], paired=True, labels=[64, 128, 256])
    assert (result.best, result.n_pairs, result.distinguishable, result.tied) == (128, 0, None, (128, 256, 64))
    assert math.isnan(result.row(128).std) and math.isnan(result.row(64).p_value)
    assert "one seed per batch size gives no estimate of the noise" in result.verdict("batch size")


def test_constant_differences_are_certain():
    # exact binary fractions: every seed differs by exactly 0.25, so there is no noise to hide behind
    result = compare([[1.0, 2.0, 3.0], [1.25, 2.25, 3.25], [1.0, 2.0, 3.0]], paired=True)
    assert result.row(1).p_value == 0.0 and result.row(1).p_holm == 0.0
    assert result.row(2).p_value == 1.0 and result.tied == (0, 2)


def test_unpaired_settings_may_have_different_repeat_counts_and_paired_ones_may_not():
    values = [[0.2, 0.22, 0.21, 0.19], [0.3, 0.35], [0.25]]
    result = compare(values, paired=False)
    assert result.row(1).p_value == pytest.approx(stats.ttest_ind(values[0], values[1], equal_var=False).pvalue)
    assert math.isnan(result.row(2).p_value) and result.row(2).tied  # one value: untestable, so not ruled out
    assert result.n_pairs == 1
    with pytest.raises(ValueError, match="rows of one length; got lengths 4, 2, 1"):
        compare(values, paired=True)
    with pytest.raises(ValueError, match="2 labels for 3 settings"):
        compare(values, paired=False, labels=[1, 2])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 5.0), min_size=3, max_size=3), min_size=1, max_size=5), st.booleans())
def test_the_best_has_the_lowest_mean_and_is_tied_with_itself(values, paired):
    result = compare(values, paired=paired)
    means = [np.mean(v) for v in values]
    assert means[result.best] == min(means) and result.tied[0] == result.best
    assert result.n_pairs == len(values) * (len(values) - 1) // 2
    for row in result.rows:
        assert row.tied == (row.label == result.best or not row.p_holm < 0.05)
        assert row.label == result.best or row.p_holm >= row.p_value


# ---------------------------------------------------------------------------------------------------------
# Error rates by simulation: x[setting, seed] = μ_setting + seed effect + own noise.

DRAWS = 400


def _draws(means, n_seeds: int, seed_sd: float, noise_sd: float, seed: int):
    rng = np.random.default_rng(seed)
    mu = np.asarray(means, dtype=float)[:, None]
    for _ in range(DRAWS):
        yield mu + seed_sd * rng.normal(size=n_seeds) + noise_sd * rng.normal(size=(mu.size, n_seeds))


def test_without_a_true_difference_all_settings_stay_tied_at_least_95_percent_of_the_time():
    # 4 settings, 3 seeds, seed correlation 1 / (1 + 0.15²) ≈ 0.98 (the digits example's): the best is chosen
    # by the noise, so it is the family of all pairs that Holm must protect.
    all_tied = sum(len(compare(x, paired=True).tied) == 4 for x in _draws([0, 0, 0, 0], 3, 1.0, 0.15, seed=1))
    assert all_tied / DRAWS >= 0.95  # measured: 0.965 (Holm over the 3 comparisons with the best only: 0.9175)
    # Welch's test on independent samples (no seed effect)
    welch = sum(len(compare(x, paired=False).tied) == 4 for x in _draws([0, 0, 0, 0], 3, 0.0, 1.0, seed=2))
    assert welch / DRAWS >= 0.95  # measured: 0.9825


def test_a_difference_only_the_pairing_sees_is_found():
    # the README's example as a model: its means, 3 seeds, seed correlation 0.025² / (0.025² + 0.0036²) ≈ 0.98
    means = [0.158, 0.180, 0.232, 0.355]
    paired = unpaired = 0
    for x in _draws(means, 3, 0.025, 0.0036, seed=3):
        result = compare(x, paired=True)
        paired += result.best == 0 and result.distinguishable is True  # 0.022 ahead of the runner-up, found
        unpaired += compare(x, paired=False).distinguishable is True
    assert paired / DRAWS >= 0.85  # measured: 0.9375
    assert unpaired / DRAWS <= 0.25  # measured: 0.1125 — the seeds' spread hides the difference from Welch
