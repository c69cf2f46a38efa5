"""``optcore.steps_to_target``: it trains exactly as ``optcore.train`` does, stops at the first check at or below
the target, checks on the stated geometric grid, and reports runs that miss or diverge."""

import math

import numpy as np
import pytest

import optcore
from optcore.network import pack
from optcore.to_target import next_check, steps_to_target


@pytest.fixture(scope="module")
def data():
    return optcore.load_dataset("moons", seed=0, n_samples=300, noise=0.2, val_fraction=0.25)


def _net(ds):
    return optcore.Network.for_dataset(ds, hidden=[8], activation="tanh", dtype=np.float64)


def _run(ds, **kwargs):
    args = dict(batch_size=32, target=0.3, max_steps=2000, seed=3) | kwargs
    return steps_to_target(ds, _net(ds), optcore.make_optimizer("adam", lr=kwargs.pop("lr", 0.02)), **args)


def test_it_trains_as_train_does(data):
    # every step checked: the validation cost after two epochs is train()'s, bit for bit
    result = _run(data, target=0.0, max_steps=2 * optcore.n_batches(data.n_train, 32), resolution=1e-12)
    history = optcore.train(data, _net(data), optcore.make_optimizer("adam", lr=0.02), epochs=2, batch_size=32, seed=3)
    checks = dict(result.checks)
    assert checks[optcore.n_batches(data.n_train, 32)] == history.val_cost[0]
    assert checks[result.steps] == history.val_cost[1]
    assert result.samples == 2 * data.n_train and not result.reached


def test_it_stops_at_the_first_check_at_or_below_the_target(data):
    result = _run(data)
    assert result.reached and not result.diverged
    steps, costs = zip(*result.checks, strict=True)
    assert steps[-1] == result.steps and costs[-1] <= 0.3 < min(costs[:-1])
    # the grid: each check at ⌈s·1.02⌉ after the previous one, and at least one step later
    assert list(steps[1:]) == [next_check(s, 0.02) for s in steps[:-1]]
    assert next_check(10, 0.02) == 11 and next_check(200, 0.02) == 204
    n_full = optcore.n_batches(data.n_train, 32)
    epochs, rest = divmod(result.steps, n_full)
    assert result.samples == epochs * data.n_train + rest * 32
    assert result.throughput == pytest.approx(result.samples / result.seconds)


def test_measuring_the_noise_scale_changes_nothing_else(data):
    plain, measured = _run(data), _run(data, noise_scale=True)
    assert plain.checks == measured.checks
    assert math.isnan(plain.noise_scale) and measured.noise_scale > 0 and len(measured.noise) == len(plain.checks)


def test_the_noise_scale_is_the_ratio_of_the_runs_mean_estimates(data):
    # the same steps by hand: mean tr Σ / mean |G|² of optcore.noise_estimates over every step of the run
    result = _run(data, target=None, max_steps=20, noise_scale=True)
    net, opt = _net(data), optcore.make_optimizer("adam", lr=0.02)
    init_rng, shuffle_rng = optcore.seeded_generators(3)
    flat, params = pack(net.init(init_rng))
    flat_grads, grads = pack(net.new_grads(params))
    state, estimates, steps = opt.init([flat]), [], 0
    while steps < 20:
        for xb, yb in optcore.minibatches(data.X_train, data.Y_train, 32, shuffle_rng):
            _, _, per_example_sq, batch_sq = net.cost_grad_and_norms(params, xb, yb, grads, n_train=data.n_train)
            if xb.shape[0] > 1:  # 225 rows: every 8th batch has one row, which gives no estimate
                estimates.append(optcore.noise_estimates(per_example_sq, batch_sq))
            opt.update([flat], [flat_grads], state, 0.02)
            steps += 1
            if steps == 20:
                break
    assert len(estimates) == 18
    grad_sq, trace = np.mean(estimates, axis=0)
    assert result.noise_scale == pytest.approx(trace / grad_sq, rel=1e-12)


def test_a_run_that_misses_or_diverges_says_so(data):
    short = _run(data, max_steps=5)
    assert (short.reached, short.diverged, short.steps) == (False, False, 5)
    regression = optcore.load_dataset("regression", seed=0, n_samples=200)
    wild = steps_to_target(
        regression, _net(regression), optcore.make_optimizer("gd", lr=50.0), batch_size=32, target=0.1, max_steps=500
    )
    assert wild.diverged and not wild.reached
    timed = _run(data, target=None, max_steps=10**6, max_seconds=0.05)
    assert timed.checks == () and timed.seconds >= 0.05 and not timed.reached


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, r"batch_size must be in \[1, 225\]"),
        ({"max_steps": 0}, "max_steps must be a whole number ≥ 1"),
        ({"target": math.nan}, "target must be a finite cost"),
        ({"resolution": 0}, "resolution must be > 0"),
        ({"noise_beta": 1.0}, r"noise_beta must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_are_named(data, kwargs, message):
    with pytest.raises(optcore.OptcoreError, match=message):
        _run(data, **kwargs)
