"""The declarations optimizers and schedules check their arguments against (optcore.hyperparameters)."""

from __future__ import annotations

import math

import pytest

from optcore import (
    OPTIMIZERS,
    OptcoreError,
    make_optimizer,
    make_schedule,
    optimizer_hyperparameters,
    schedule_hyperparameters,
    schedule_names,
)
from optcore.hyperparameters import Hyperparameter, bind

BETA = Hyperparameter("beta1", float, 0.0, 1.0, default=0.9)


@pytest.mark.parametrize(("value", "ok"), [(0.0, True), (0.5, True), (1.0, False), (-1e-12, False), (math.nan, False)])
def test_a_float_is_checked_against_its_interval(value, ok):
    if ok:
        assert BETA.check(value) == value
    else:
        with pytest.raises(OptcoreError, match=r"beta1 must be in \[0, 1\); got"):
            BETA.check(value)


def test_an_int_is_a_whole_number_and_a_bound_may_be_another_hyperparameter():
    steps = Hyperparameter("t0", int, 1)
    assert steps.check(3.0) == 3 and isinstance(steps.check(3.0), int)
    for bad in (0, 2.5):
        with pytest.raises(OptcoreError, match="t0 must be a whole number ≥ 1"):
            steps.check(bad)
    lr = Hyperparameter("lr", low=0.0, low_open=True)
    bounded = Hyperparameter("min_lr", low=0.0, high_open=False, default=0.0, at_most="lr")
    assert bind("x", [lr, bounded], {"lr": 0.1, "min_lr": 0.1}) == {"lr": 0.1, "min_lr": 0.1}
    with pytest.raises(OptcoreError, match=r"min_lr must be in \[0, 0.1\]; got 0.2"):
        bind("x", [lr, bounded], {"lr": 0.1, "min_lr": 0.2})


def test_bind_names_unknown_and_missing_arguments():
    with pytest.raises(OptcoreError, match="optimizer 'x' takes no hyperparameter 'beta2'; it takes: beta1"):
        bind("optimizer 'x'", [BETA], {"beta2": 0.9})
    with pytest.raises(OptcoreError, match="needs t0"):
        bind("schedule 'x'", [Hyperparameter("t0", int, 1)], {})
    assert bind("x", [BETA], {}) == {"beta1": 0.9}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_is_built_from_its_declaration(name):
    declared = optimizer_hyperparameters(name)
    assert declared[0].name == "lr" and declared[0].required
    opt = make_optimizer(name, lr=0.1)
    assert opt.hyperparams() == {h.name: (0.1 if h.name == "lr" else h.default) for h in declared}
    for h in declared:
        if h.kind is float and h.high < math.inf:  # the upper bound is refused where declared open
            with pytest.raises(OptcoreError, match=f"{h.name} must be in"):
                make_optimizer(name, lr=0.1, **{h.name: h.high})


@pytest.mark.parametrize("name", schedule_names())
def test_every_schedule_declares_lr_first_and_defaults_within_their_domain(name):
    declared = schedule_hyperparameters(name)
    assert declared[0].name == "lr"
    for h in declared:
        if not h.required and h.default is not None:
            h.check(h.default, high=1.0 if h.at_most else None)
    required = {h.name: 2 for h in declared[1:] if h.required and h.name != "total_steps"}
    if name.removeprefix("warmup_") == "exponential":
        required["gamma"] = 0.9
    assert make_schedule(name, lr=0.1, total_steps=10, **required)(0) > 0
