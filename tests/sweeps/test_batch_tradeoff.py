"""The steps–samples trade-off: predictions recomputed from the paper's formulas, and the least-squares fit of
S_min and B_crit recovering known parameters from synthetic steps."""

import math

import numpy as np
import pytest

from sweeps.batchsize.tradeoff import Prediction, fastest, fit_steps, predict, s_min_from_pilot

SIZES = [8, 16, 32, 64, 128, 256, 512, 1024]


def test_predictions_follow_the_formulas():
    s_min, b_noise = 120.0, 90.0
    throughput = {32: 4000.0, 256: 20000.0}
    rows = predict(s_min, b_noise, [32, 256, 1024], throughput)
    e_min = s_min * b_noise
    for row in rows:
        b = row.batch_size
        assert row.steps == pytest.approx(s_min * (1 + b_noise / b))
        assert row.samples == pytest.approx(e_min * (1 + b / b_noise))  # E = E_min·(1 + B/B_noise)
    assert rows[0].seconds == pytest.approx(rows[0].samples / 4000.0)
    assert math.isnan(rows[2].seconds)  # no throughput measured for 1024
    # the pilot's own steps are what the fitted model gives back at the pilot size
    s = s_min_from_pilot(300.0, 64, b_noise)
    assert s * (1 + b_noise / 64) == pytest.approx(300.0)


def test_the_fastest_prediction_is_recommended():
    rows = [Prediction(32, 10, 320, 2.0), Prediction(64, 8, 512, 1.0), Prediction(128, 7, 896, 1.0)]
    assert fastest(rows) == 64  # tie on seconds: the smaller size
    assert fastest([Prediction(32, 10, 320, math.nan)]) is None


def test_the_fit_recovers_known_parameters():
    s_min, b_crit = 250.0, 140.0
    exact = [s_min * (1 + b_crit / b) for b in SIZES]
    fit = fit_steps(SIZES, exact)
    assert (fit.s_min, fit.b_crit) == pytest.approx((s_min, b_crit), rel=1e-10)
    assert fit.rms_relative_error < 1e-10 and fit.e_min == pytest.approx(s_min * b_crit)
    # 5% multiplicative noise: within 15% over many seeds, and unbiased on average
    estimates = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        noisy = np.array(exact) * np.exp(rng.normal(0, 0.05, len(SIZES)))
        fit = fit_steps(SIZES, noisy)
        estimates.append((fit.s_min, fit.b_crit))
        assert fit.s_min == pytest.approx(s_min, rel=0.15) and fit.b_crit == pytest.approx(b_crit, rel=0.3)
    mean_s, mean_b = np.mean(estimates, axis=0)
    assert mean_s == pytest.approx(s_min, rel=0.02) and mean_b == pytest.approx(b_crit, rel=0.05)


def test_unreached_sizes_are_left_out_and_bad_data_named():
    exact = [100 * (1 + 50 / b) for b in SIZES]
    fit = fit_steps(SIZES, [math.nan, *exact[1:]])
    assert fit.n == len(SIZES) - 1 and fit.b_crit == pytest.approx(50)
    with pytest.raises(ValueError, match="needs steps at two sizes or more; got 1"):
        fit_steps([8, 16], [100, math.inf])
    with pytest.raises(ValueError, match="do not fall with the batch size"):
        fit_steps([8, 16, 32], [100, 200, 400])
