"""The gradient noise scale: per-example norms against a brute-force loop, the estimator against known G and Σ,
and its place in the training loop."""

import itertools
import math

import numpy as np
import pytest

import optcore
from optcore import ACTIVATIONS, Network, ewa
from optcore.losses import LOSSES
from optcore.noise import NoiseScale, noise_estimates
from optcore.train import seeded_generators


def _batch(task, rng, m, n_in=4, k=3):
    X = rng.standard_normal((m, n_in))
    if task == "binary":
        Y = (rng.random((m, 1)) > 0.5).astype(float)
    elif task == "multiclass":
        Y = np.eye(k)[rng.integers(0, k, m)]
    else:
        Y = rng.standard_normal((m, 2))
    return X, Y


def _sq(arrays) -> float:
    return sum(float(np.vdot(a, a)) for a in arrays)


@pytest.mark.parametrize("task", list(LOSSES))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_per_example_norms_equal_single_row_gradients(activation, task):
    rng = np.random.default_rng(3)
    X, Y = _batch(task, rng, m=7)
    sizes = [4, 5, 3, Y.shape[1]]
    net = Network(sizes, activation=activation, task=task, l2=0.7, dtype=np.float64)
    data_only = Network(sizes, activation=activation, task=task, l2=0.0, dtype=np.float64)
    params = net.init(rng)
    for b in params[1::2]:  # non-zero biases, so every unit is exercised
        b[:] = rng.standard_normal(b.shape) * 0.1

    cost, grads, per_example_sq, batch_sq = net.cost_grad_and_norms(params, X, Y, n_train=50)

    # ‖gᵢ‖² of the data loss: the gradient of row i alone, with no L2 term, squared and summed over layers.
    expected = [_sq(data_only.cost_and_grad(params, X[i : i + 1], Y[i : i + 1])[1]) for i in range(7)]
    np.testing.assert_allclose(per_example_sq, expected, rtol=1e-10, atol=0)
    assert batch_sq == pytest.approx(_sq(data_only.cost_and_grad(params, X, Y)[1]), rel=1e-10, abs=0)
    # Measuring changes nothing the step uses: the same cost and gradient (L2 term included), bit for bit.
    plain_cost, plain_grads = net.cost_and_grad(params, X, Y, n_train=50)
    assert cost == plain_cost
    assert all(np.array_equal(a, b) for a, b in zip(grads, plain_grads, strict=True))


def test_estimates_over_every_batch_of_a_finite_population():
    """All C(N, B) batches drawn without replacement from N vectors: the estimates average to
    tr Σ·N/(N − 1) and |G|² − tr Σ/(N − 1) exactly (Σ the covariance over the N vectors, as the module says)."""
    rng = np.random.default_rng(0)
    n, b = 7, 3
    g = rng.standard_normal((n, 4)) + np.array([1.0, -2.0, 0.5, 0.0])
    G = g.mean(axis=0)
    trace = float(np.sum((g - G) ** 2)) / n
    estimates = np.array(
        [
            noise_estimates(np.sum(g[list(rows)] ** 2, axis=1), float(np.sum(g[list(rows)].mean(axis=0) ** 2)))
            for rows in itertools.combinations(range(n), b)
        ]
    )
    grad_sq, trace_sigma = estimates.mean(axis=0)
    assert grad_sq == pytest.approx(float(G @ G) - trace / (n - 1), rel=1e-12)
    assert trace_sigma == pytest.approx(trace * n / (n - 1), rel=1e-12)


def test_estimator_is_unbiased_for_a_linear_model_with_gaussian_noise():
    """y = x·w* + b* + ε, x ~ N(0, I_d), ε ~ N(0, σ²), squared error (z − y)², parameters w = w* + u,
    b = b* + c. Example i's gradient is gᵢ = 2rᵢ·[xᵢ; 1] with rᵢ = xᵢ·u + c − εᵢ, so (Gaussian moments)

        G = 2·[u; c]                  |G|² = 4(|u|² + c²)
        E‖gᵢ‖² = 4(|u|²(d + 3) + (c² + σ²)(d + 1))       tr Σ = E‖gᵢ‖² − |G|² = 4(|u|²(d + 2) + c²d + σ²(d + 1))

    Tolerance: over 4,000 seeds (one fresh batch of B = 4 each) both mean estimates lie within 4 standard
    errors of the truth, and those errors are small enough (≤ 1/8 of the bias the naive estimators
    mean ‖g_B‖² and S − ‖g_B‖² would have) that a wrong B − 1 factor could not pass.
    """
    d, b, sigma, c = 4, 4, 0.5, 0.2
    rng = np.random.default_rng(0)
    w_star, b_star = rng.standard_normal((d, 1)), 0.3
    u = np.array([[0.5], [-0.4], [0.3], [0.2]])
    net = Network([d, 1], task="regression", l2=0.5, dtype=np.float64)  # the L2 term must be left out
    params = [w_star + u, np.array([b_star + c])]
    uu = float(np.sum(u**2))
    true_grad_sq = 4 * (uu + c**2)
    true_trace = 4 * (uu * (d + 2) + c**2 * d + sigma**2 * (d + 1))

    estimates = []
    for seed in range(4000):
        draw = np.random.default_rng(seed)
        X = draw.standard_normal((b, d))
        Y = X @ w_star + b_star + sigma * draw.standard_normal((b, 1))
        _, _, per_example_sq, batch_sq = net.cost_grad_and_norms(params, X, Y, n_train=1000)
        estimates.append(noise_estimates(per_example_sq, batch_sq))
    estimates = np.array(estimates)
    mean = estimates.mean(axis=0)
    se = estimates.std(axis=0, ddof=1) / math.sqrt(len(estimates))

    assert abs(mean[0] - true_grad_sq) <= 4 * se[0], (mean[0], true_grad_sq, se[0])
    assert abs(mean[1] - true_trace) <= 4 * se[1], (mean[1], true_trace, se[1])
    # Power: E‖g_B‖² overstates |G|² by tr Σ/B; S − ‖g_B‖² understates tr Σ by the factor (B − 1)/B.
    assert true_trace / b >= 8 * se[0]
    assert true_trace / b >= 8 * se[1]


def test_noise_scale_is_the_ratio_of_the_smoothed_estimates_and_skips_single_rows():
    rng = np.random.default_rng(1)
    steps = [(rng.random(5) * 3, float(rng.random())) for _ in range(6)]
    tracker = NoiseScale(0.8)
    assert math.isnan(tracker.value) and math.isnan(tracker.grad_sq)
    for i, (per_example_sq, batch_sq) in enumerate(steps):
        tracker.update(per_example_sq, batch_sq)
        tracker.update(np.array([7.0]), 1.0)  # a one-row batch: no estimate, skipped
        grad_sq, trace = zip(*(noise_estimates(*s) for s in steps[: i + 1]), strict=True)
        assert tracker.grad_sq == pytest.approx(ewa(grad_sq, 0.8)[-1], rel=1e-12)
        assert tracker.trace_sigma == pytest.approx(ewa(trace, 0.8)[-1], rel=1e-12)
        expected = tracker.trace_sigma / tracker.grad_sq if tracker.grad_sq > 0 else math.nan
        assert tracker.value == pytest.approx(expected, rel=1e-12, nan_ok=True)
    with pytest.raises(ValueError, match="at least 2 rows; got 1"):
        noise_estimates(np.array([1.0]), 1.0)


def test_a_non_positive_gradient_estimate_gives_no_noise_scale():
    tracker = NoiseScale(0.9)
    tracker.update(np.array([1.0, 1.0]), 0.0)  # ‖g_B‖² = 0: |G|²_est = −1
    assert tracker.grad_sq < 0 and math.isnan(tracker.value)


def _moons(dtype=np.float64):
    return optcore.load_dataset("moons", seed=0, n_samples=300, noise=0.2).astype(dtype)


def test_one_full_batch_step_records_the_estimate_of_the_whole_training_set():
    ds = _moons()
    net = Network.for_dataset(ds, hidden=[6], activation="tanh", l2=0.3, dtype=np.float64)
    history = optcore.train(
        ds, net, optcore.make_optimizer("gd", lr=0.1), epochs=1, batch_size=ds.n_train, seed=4, noise_scale=True
    )
    params = net.init(seeded_generators(4)[0])  # the parameters that one step measured
    data_only = Network.for_dataset(ds, hidden=[6], activation="tanh", dtype=np.float64)
    per_example_sq = [
        _sq(data_only.cost_and_grad(params, ds.X_train[i : i + 1], ds.Y_train[i : i + 1])[1]) for i in range(ds.n_train)
    ]
    grad_sq, trace = noise_estimates(
        np.array(per_example_sq), _sq(data_only.cost_and_grad(params, ds.X_train, ds.Y_train)[1])
    )
    assert history.noise_grad_sq == [pytest.approx(grad_sq, rel=1e-9)]
    assert history.noise_trace_sigma == [pytest.approx(trace, rel=1e-9)]
    assert history.noise_scale == [pytest.approx(trace / grad_sq, rel=1e-9)]


def test_training_with_the_noise_scale_records_it_per_epoch_and_trains_the_same():
    ds = _moons(np.float32)
    net = Network.for_dataset(ds, hidden=[8], activation="relu")
    records = []
    kwargs = dict(epochs=4, batch_size=32, seed=2)
    measured = optcore.train(
        ds,
        net,
        optcore.make_optimizer("adam", lr=0.01),
        noise_scale=True,
        callback=lambda r, h: records.append(r),
        **kwargs,
    )
    plain = optcore.train(ds, net, optcore.make_optimizer("adam", lr=0.01), **kwargs)

    assert all(np.array_equal(a, b) for a, b in zip(measured.params, plain.params, strict=True))
    assert measured.val_cost == plain.val_cost
    assert len(measured.noise_scale) == len(measured.noise_grad_sq) == len(measured.noise_trace_sigma) == 4
    assert all(t > 0 for t in measured.noise_trace_sigma)
    for r in records:
        assert r.noise_scale == pytest.approx(r.noise_trace_sigma / r.noise_grad_sq, nan_ok=True)
    assert [r.noise_scale for r in records] == measured.noise_scale
    curves = measured.curves()
    assert curves["noise_scale"] == measured.noise_scale
    assert set(records[-1].values("val_accuracy")) == set(curves)

    assert plain.noise_scale == plain.noise_grad_sq == plain.noise_trace_sigma == []
    assert "noise_scale" not in plain.curves()


def test_batches_of_one_row_give_nan_not_an_error():
    ds = _moons(np.float32)
    net = Network.for_dataset(ds, hidden=[4])
    history = optcore.train(ds, net, optcore.make_optimizer("gd", lr=0.01), epochs=2, batch_size=1, noise_scale=True)
    assert len(history.noise_scale) == 2 and all(math.isnan(v) for v in history.noise_scale)
