"""Schedules against their closed forms recomputed here, and their invariants as properties."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optcore import OptcoreError, UnknownNameError, make_schedule, schedule_names

LR = 0.1


@pytest.mark.parametrize(
    ("name", "params", "formula"),
    [
        ("constant", {}, lambda t: LR),
        ("step", {"step_size": 5, "gamma": 0.5}, lambda t: LR * 0.5 ** (t // 5)),
        ("exponential", {"gamma": 0.95}, lambda t: LR * 0.95**t),
        ("exponential", {"decay_rate": 0.3}, lambda t: LR * math.exp(-0.3 * t)),
        ("inverse_time", {"decay_rate": 0.5}, lambda t: LR / (1 + 0.5 * t)),
        ("inverse_time", {"decay_rate": 0.5, "interval": 4}, lambda t: LR / (1 + 0.5 * (t // 4))),
        ("polynomial", {"power": 2.0, "end_lr": 0.01}, lambda t: (LR - 0.01) * (1 - min(t, 30) / 30) ** 2 + 0.01),
        ("cosine", {"min_lr": 0.001}, lambda t: 0.001 + (LR - 0.001) * (1 + math.cos(math.pi * min(t, 30) / 30)) / 2),
        ("cosine_restarts", {"t0": 7}, lambda t: LR * (1 + math.cos(math.pi * (t % 7) / 7)) / 2),
    ],
)
def test_schedule_matches_closed_form(name, params, formula):
    schedule = make_schedule(name, lr=LR, total_steps=30, **params)
    for t in range(45):
        assert schedule(t) == pytest.approx(formula(t), rel=1e-12, abs=1e-15), t


def test_cosine_restarts_with_growing_periods():
    s = make_schedule("cosine_restarts", lr=1.0, t0=2, t_mult=2)
    # periods: [0, 2), [2, 6), [6, 14)
    starts = {0: 2, 2: 4, 6: 8}
    for start, length in starts.items():
        for k in range(length):
            assert s(start + k) == pytest.approx((1 + math.cos(math.pi * k / length)) / 2, abs=1e-12)


def test_warmup_then_cosine():
    s = make_schedule("warmup_cosine", lr=LR, total_steps=20, warmup_steps=4, warmup_start_factor=0.25)
    for t in range(4):
        assert s(t) == pytest.approx(LR * (0.25 + 0.75 * t / 4))
    for t in range(4, 25):
        assert s(t) == pytest.approx(LR * (1 + math.cos(math.pi * min(t - 4, 16) / 16)) / 2)


decaying = st.sampled_from(
    [
        ("step", {"step_size": 3, "gamma": 0.7}),
        ("exponential", {"gamma": 0.9}),
        ("exponential", {"decay_rate": 0.05}),
        ("inverse_time", {"decay_rate": 1.0, "interval": 2}),
        ("polynomial", {"power": 0.5}),
        ("cosine", {"min_lr": 0.0}),
    ]
)


@settings(max_examples=60, deadline=None)
@given(case=decaying, lr=st.floats(1e-5, 1.0), total=st.integers(1, 200), warmup=st.integers(1, 50))
def test_decay_never_increases_and_warmup_reaches_lr_when_it_ends(case, lr, total, warmup):
    name, params = case
    s = make_schedule(name, lr=lr, total_steps=total, **params)
    values = [s(t) for t in range(total + 20)]
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(values))
    assert values[0] == pytest.approx(lr)

    w = make_schedule(f"warmup_{name}", lr=lr, total_steps=total + warmup, warmup_steps=warmup, **params)
    ramp = [w(t) for t in range(warmup + 1)]
    assert all(b >= a for a, b in itertools.pairwise(ramp))
    assert w(warmup) == pytest.approx(lr)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("cosine", {}, "schedule 'cosine' needs total_steps"),
        ("step", {}, "schedule 'step' needs step_size"),
        ("step", {"step_size": 0}, "step_size must be a whole number ≥ 1; got 0"),
        ("step", {"step_size": 2, "gamma": 1.5}, "gamma must be in (0, 1]; got 1.5"),
        ("exponential", {}, "needs exactly one of gamma"),
        ("exponential", {"gamma": 0.9, "decay_rate": 0.1}, "needs exactly one of gamma"),
        ("inverse_time", {"decay_rate": -1}, "decay_rate must be in [0, inf); got -1"),
        ("constant", {"gamma": 0.5}, "schedule 'constant' takes no parameter 'gamma'"),
        ("warmup_cosine", {"total_steps": 5, "warmup_steps": 5}, "warmup_steps must be < total_steps (5); got 5"),
    ],
)
def test_bad_schedule_parameters(name, params, message):
    with pytest.raises(OptcoreError) as err:
        make_schedule(name, lr=LR, **params)
    assert message in str(err.value)


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        make_schedule("cyclic", lr=LR)
    assert "valid schedules:" in str(err.value)
    for name in schedule_names():
        assert name in str(err.value)
    assert "warmup_cosine" in schedule_names()


def test_schedule_is_pure():
    s = make_schedule("step", lr=1.0, step_size=2)
    assert [s(t) for t in (5, 0, 5, 3)] == [s(5), s(0), s(5), s(3)]
    with pytest.raises(AttributeError):
        s.lr = 2.0  # frozen


def test_warmup_constant_ramps_then_holds():
    s = make_schedule("warmup_constant", lr=LR, total_steps=10, warmup_steps=4, warmup_start_factor=0.2)
    expected = [LR * (0.2 + 0.8 * t / 4) for t in range(4)] + [LR] * 8
    assert [s(t) for t in range(12)] == pytest.approx(expected, rel=1e-15)
    assert "warmup_constant" in schedule_names()
