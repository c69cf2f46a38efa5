"""Backward pass against finite differences; losses against their formulas."""

import numpy as np
import pytest

from optcore import ACTIVATIONS, Network, OptcoreError, gradient_check
from optcore.losses import LOSSES


def _batch(task, m=7, n_in=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n_in))
    if task == "binary":
        Y = (rng.random((m, 1)) > 0.5).astype(float)
    elif task == "multiclass":
        Y = np.eye(k)[rng.integers(0, k, m)]
    else:
        Y = rng.standard_normal((m, 1))
    return X, Y


@pytest.mark.parametrize("l2", [0.0, 0.7])
@pytest.mark.parametrize("task", list(LOSSES))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_gradient_check(activation, task, l2):
    X, Y = _batch(task)
    net = Network([4, 5, 3, Y.shape[1]], activation=activation, task=task, l2=l2, dtype=np.float64)
    params = net.init(np.random.default_rng(1))
    for b in params[1::2]:  # non-zero biases exercise db too
        b[:] = np.random.default_rng(2).standard_normal(b.shape) * 0.1
    assert gradient_check(net, params, X, Y) < 1e-7


def test_cost_formula_with_l2():
    X, Y = _batch("binary", m=5)
    net = Network([4, 3, 1], activation="tanh", task="binary", l2=0.3, dtype=np.float64)
    W1, b1, W2, b2 = net.init(np.random.default_rng(0))
    z = np.tanh(X @ W1 + b1) @ W2 + b2
    yhat = 1 / (1 + np.exp(-z))
    loss = -(Y * np.log(yhat) + (1 - Y) * np.log(1 - yhat))
    expected = loss.sum() / 5 + 0.3 / (2 * 5) * ((W1**2).sum() + (W2**2).sum())
    assert net.cost([W1, b1, W2, b2], X, Y) == pytest.approx(expected, rel=1e-12)
    cost, _ = net.cost_and_grad([W1, b1, W2, b2], X, Y)
    assert cost == pytest.approx(expected, rel=1e-12)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    y = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    loss = LOSSES["multiclass"]
    assert loss.total(z, y) == pytest.approx(0.0 + np.log(3))
    g = loss.gradient(z, y, np.empty_like(z))
    assert np.all(np.isfinite(g))
    assert g[0] == pytest.approx([0, 0, 0], abs=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("task", list(LOSSES))
def test_total_and_gradient_is_total_then_gradient_bit_for_bit(task, dtype):
    # The training step's one call must give the numbers of the two separate ones, huge logits included.
    _, Y = _batch(task, m=9, k=4)
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((9, Y.shape[1])) * 5).astype(dtype)
    z[0, 0], z[-1, -1] = 500.0, -500.0
    Y = Y.astype(dtype)
    loss = LOSSES[task]
    expected_grad = loss.gradient(z, Y, np.empty_like(z))
    out = np.empty_like(z)
    total = loss.total_and_gradient(z, Y, out)
    assert total == loss.total(z, Y)
    assert out.tobytes() == expected_grad.tobytes()


def test_log_loss_from_logits_is_stable():
    loss = LOSSES["binary"]
    z = np.array([[800.0], [-800.0]])
    y = np.array([[1.0], [0.0]])
    assert loss.total(z, y) == 0.0
    assert loss.total(z, 1 - y) == pytest.approx(1600.0)


def test_mse_and_r2():
    loss = LOSSES["regression"]
    z, y = np.array([[1.0], [2.0], [4.0]]), np.array([[1.0], [3.0], [3.0]])
    assert loss.total(z, y) == 2.0
    assert loss.metric(z, y) == pytest.approx(1 - 2.0 / np.sum((y - y.mean()) ** 2))


def test_float32_network_keeps_float32():
    X, Y = _batch("multiclass")
    net = Network([4, 8, 3], task="multiclass")
    params = net.init(np.random.default_rng(0))
    assert all(p.dtype == np.float32 for p in params)
    _, grads = net.cost_and_grad(params, X.astype(np.float32), Y.astype(np.float32))
    assert all(g.dtype == np.float32 for g in grads)


def test_he_and_xavier_scales():
    rng = np.random.default_rng(0)
    W = Network([400, 300, 1], init="he", dtype=np.float64).init(rng)[0]
    assert W.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    W = Network([400, 300, 1], init="xavier", dtype=np.float64).init(rng)[0]
    assert W.std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)


def test_gradient_check_refuses_a_float32_network():
    X, Y = _batch("binary")
    net = Network([4, 5, 1], activation="tanh", task="binary", dtype=np.float32)
    params = net.init(np.random.default_rng(0))
    with pytest.raises(OptcoreError, match="gradient checking needs float64, got float32"):
        gradient_check(net, params, X.astype(np.float32), Y.astype(np.float32))
    # float32 parameters handed to a float64 network are refused too
    net64 = Network([4, 5, 1], activation="tanh", task="binary", dtype=np.float64)
    with pytest.raises(OptcoreError, match="got float32"):
        gradient_check(net64, params, X, Y)


# -- L2 on mini-batches: the penalty is scaled by the training-set size m, not the batch size b ------------


def _l2_problem(m=23, l2=2.0):
    X, Y = _batch("multiclass", m=m, k=3, seed=4)
    net = Network([4, 6, 3], activation="tanh", task="multiclass", l2=l2, dtype=np.float64)
    params = net.init(np.random.default_rng(5))
    for b in params[1::2]:
        b[:] = np.random.default_rng(6).standard_normal(b.shape) * 0.1
    return net, params, X, Y


@pytest.mark.parametrize("batch_size", [1, 4, 10, 23])
def test_minibatch_gradients_average_to_the_full_batch_gradient(batch_size):
    # Σ_B (b_B/m)·∇J_B = ∇J for any partition (here with a short last batch): the mini-batch gradient is an
    # unbiased estimate of the full one, the L2 part included.
    net, params, X, Y = _l2_problem()
    m = X.shape[0]
    full_cost, full = net.cost_and_grad(params, X, Y)
    assert full_cost == pytest.approx(net.cost(params, X, Y), rel=1e-13)
    average = [np.zeros_like(p) for p in params]
    for start in range(0, m, batch_size):
        xb, yb = X[start : start + batch_size], Y[start : start + batch_size]
        _, g = net.cost_and_grad(params, xb, yb, n_train=m)
        for acc, gi in zip(average, g, strict=True):
            acc += gi * (xb.shape[0] / m)
    for a, f in zip(average, full, strict=True):
        np.testing.assert_allclose(a, f, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("rows", [1, 5, 23])
def test_l2_decay_per_step_does_not_depend_on_the_batch_size(rows):
    net, params, X, Y = _l2_problem(l2=2.0)
    plain = Network(net.sizes, activation="tanh", task="multiclass", l2=0.0, dtype=np.float64)
    _, with_l2 = net.cost_and_grad(params, X[:rows], Y[:rows], n_train=23)
    with_l2 = [g.copy() for g in with_l2]
    _, without = plain.cost_and_grad(params, X[:rows], Y[:rows], n_train=23)
    for i, (g, g0) in enumerate(zip(with_l2, without, strict=True)):
        expected = (2.0 / 23) * params[i] if i % 2 == 0 else np.zeros_like(params[i])  # biases not penalised
        np.testing.assert_allclose(g - g0, expected, rtol=1e-12, atol=1e-15)
    # and the batch's cost carries the penalty (λ/2m)·Σ‖W‖² once, whatever the batch size
    c, _ = net.cost_and_grad(params, X[:rows], Y[:rows], n_train=23)
    c0, _ = plain.cost_and_grad(params, X[:rows], Y[:rows], n_train=23)
    assert c - c0 == pytest.approx(2.0 / (2 * 23) * sum((w**2).sum() for w in params[0::2]), rel=1e-12)


@pytest.mark.parametrize("rows", [1, 5])
def test_gradient_check_of_a_minibatch_cost(rows):
    net, params, X, Y = _l2_problem(l2=0.7)
    assert gradient_check(net, params, X[:rows], Y[:rows], n_train=23) < 1e-7
