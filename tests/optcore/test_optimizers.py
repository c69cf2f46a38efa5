"""Each optimizer against its update rule recomputed here from the formula, plus validation messages."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optcore import OPTIMIZERS, OptcoreError, UnknownNameError, make_optimizer


def _run(opt, steps=25, seed=0, lrs=None):
    """Apply ``steps`` updates with gradients that depend on the parameters (g = W − target + noise)."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    state = opt.init(params)
    trajectory = []
    for t in range(steps):
        grads = [p - 0.5 + 0.1 * rng.standard_normal(p.shape) for p in params]
        trajectory.append([g.copy() for g in grads])
        state = opt.update(params, grads, state, lr=None if lrs is None else lrs[t])
    return params, trajectory, state


def _initial(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((3, 4)), rng.standard_normal(4)]


def _replay(grads_seq, rule):
    """Re-apply the recorded gradients with ``rule(p, g, mem, t)`` written from the formula."""
    params = _initial()
    mem = [dict() for _ in params]
    for t, grads in enumerate(grads_seq, start=1):
        for i, g in enumerate(grads):
            params[i] = rule(params[i], g, mem[i], t)
    return params


def _gd(lr):
    return lambda p, g, mem, t: p - lr * g


def _momentum(lr, b, nesterov=False):
    def rule(p, g, mem, t):
        v = mem["v"] = b * mem.get("v", 0) + (1 - b) * g
        return p - lr * ((b * v + (1 - b) * g) if nesterov else v)

    return rule


def _rmsprop(lr, b2, eps):
    def rule(p, g, mem, t):
        s = mem["s"] = b2 * mem.get("s", 0) + (1 - b2) * g**2
        return p - lr * g / (np.sqrt(s) + eps)

    return rule


def _adam(lr, b1, b2, eps, wd=0.0):
    def rule(p, g, mem, t):
        p = p * (1 - lr * wd)
        m = mem["m"] = b1 * mem.get("m", 0) + (1 - b1) * g
        v = mem["v"] = b2 * mem.get("v", 0) + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)

    return rule


def _adagrad(lr, eps):
    def rule(p, g, mem, t):
        G = mem["G"] = mem.get("G", 0) + g**2
        return p - lr * g / (np.sqrt(G) + eps)

    return rule


CASES = [
    ("gd", {"lr": 0.1}, _gd(0.1)),
    ("momentum", {"lr": 0.05, "beta1": 0.9}, _momentum(0.05, 0.9)),
    ("momentum", {"lr": 0.05, "beta1": 0.8, "nesterov": True}, _momentum(0.05, 0.8, nesterov=True)),
    ("rmsprop", {"lr": 0.01, "beta2": 0.99, "eps": 1e-8}, _rmsprop(0.01, 0.99, 1e-8)),
    ("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, _adam(0.01, 0.9, 0.999, 1e-8)),
    ("adam", {"lr": 0.003, "beta1": 0.5, "beta2": 0.9, "eps": 1e-6}, _adam(0.003, 0.5, 0.9, 1e-6)),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}, _adam(0.01, 0.9, 0.999, 1e-8, wd=0.1)),
    ("adagrad", {"lr": 0.1, "eps": 1e-10}, _adagrad(0.1, 1e-10)),
]


@pytest.mark.parametrize(("name", "hp", "rule"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_update_matches_formula(name, hp, rule):
    params, grads_seq, state = _run(make_optimizer(name, **hp))
    expected = _replay(grads_seq, rule)
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p, e, rtol=1e-13, atol=1e-14)
    assert state.step == len(grads_seq)


def test_scheduled_lr_overrides_the_base_rate():
    lrs = [0.1 / (1 + t) for t in range(10)]
    params, grads_seq, _ = _run(make_optimizer("gd", lr=123.0), steps=10, lrs=lrs)
    expected = _initial()
    for lr, grads in zip(lrs, grads_seq, strict=True):
        expected = [p - lr * g for p, g in zip(expected, grads, strict=True)]
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p, e, rtol=1e-14)


@settings(max_examples=30, deadline=None)
@given(lr=st.floats(1e-4, 1.0), seed=st.integers(0, 1000))
def test_momentum_with_beta_zero_is_gd(lr, seed):
    a, _, _ = _run(make_optimizer("momentum", lr=lr, beta1=0.0), steps=10, seed=seed)
    b, _, _ = _run(make_optimizer("gd", lr=lr), steps=10, seed=seed)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_state_holds_no_reference_to_params():
    opt = make_optimizer("adam", lr=0.1)
    params = _initial()
    state = opt.init(params)
    for moments in state.moments.values():
        for m, p in zip(moments, params, strict=True):
            assert not np.shares_memory(m, p)
    assert not any(isinstance(v, np.ndarray) for v in vars(opt).values())


@pytest.mark.parametrize(
    ("name", "hp", "message"),
    [
        ("adam", {"lr": 0.0}, "lr must be in (0, inf); got 0"),
        ("adam", {"lr": -1}, "lr must be in (0, inf); got -1"),
        ("adam", {"lr": 0.1, "beta1": 1.0}, "beta1 must be in [0, 1); got 1"),
        ("adam", {"lr": 0.1, "beta2": -0.1}, "beta2 must be in [0, 1); got -0.1"),
        ("rmsprop", {"lr": 0.1, "eps": 0}, "eps must be in (0, inf); got 0"),
        ("momentum", {"lr": 0.1, "beta1": 1.5}, "beta1 must be in [0, 1); got 1.5"),
        ("adamw", {"lr": 0.1, "weight_decay": -1}, "weight_decay must be in [0, inf); got -1"),
        ("gd", {"lr": 0.1, "beta1": 0.9}, "optimizer 'gd' takes no hyperparameter 'beta1'; it takes: lr"),
        ("adam", {}, "optimizer 'adam' needs a learning rate"),
    ],
)
def test_bad_hyperparameters_are_rejected_with_a_message(name, hp, message):
    with pytest.raises(OptcoreError) as err:
        make_optimizer(name, **hp)
    assert message in str(err.value)


def test_unknown_optimizer_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as err:
        make_optimizer("adamax", lr=0.1)
    assert str(err.value) == f"unknown optimizer 'adamax'; valid optimizers: {', '.join(sorted(OPTIMIZERS))}"


def test_state_survives_a_pickle_round_trip():
    import pickle

    opt = make_optimizer("adam", lr=0.01)
    _a, _, state = _run(opt, steps=5)
    restored = pickle.loads(pickle.dumps(state))
    assert restored.step == 5
    for k, arrays in state.moments.items():
        for x, y in zip(arrays, restored.moments[k], strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_an_unpickled_state_continues_the_same_trajectory(name):
    # The scratch arrays a state keeps for the update's intermediates are not state: a pickle leaves them
    # out, and the restored state makes its own on the next update, bit for bit on the same path.
    import pickle

    opt = make_optimizer(name, lr=0.01)
    params, _, state = _run(opt, steps=5)
    restored = pickle.loads(pickle.dumps(state))
    assert restored.scratch == [] and restored.step == state.step == 5
    twin = [p.copy() for p in params]
    rng = np.random.default_rng(7)
    for _ in range(5):
        grads = [rng.standard_normal(p.shape) for p in params]
        opt.update(params, grads, state)
        opt.update(twin, [g.copy() for g in grads], restored)
    for a, b in zip(params, twin, strict=True):
        assert a.tobytes() == b.tobytes()
