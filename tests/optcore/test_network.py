"""Backward pass against finite differences; losses against their formulas."""

import numpy as np
import pytest

from optcore import ACTIVATIONS, Network, gradient_check
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
