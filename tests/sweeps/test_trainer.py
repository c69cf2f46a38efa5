"""The setting → optcore adapter builds each optimizer and schedule from what it declares."""

from __future__ import annotations

import pytest

import optcore
from sweeps.optcore_adapter import build_optimizer, build_schedule

EVERY = {  # one value for every hyperparameter a search may name
    "batch_size": 32,
    "lr": 0.05,
    "beta1": 0.8,
    "beta2": 0.95,
    "eps": 1e-6,
    "nesterov": True,
    "weight_decay": 0.02,
    "step_size": 2,
    "gamma": 0.5,
    "decay_rate": 0.1,
    "interval": 2,
    "power": 2.0,
    "end_lr": 0.001,
    "min_lr": 0.002,
    "t0": 3,
    "t_mult": 2,
    "warmup_epochs": 2,
    "warmup_start_factor": 0.2,
}


@pytest.mark.parametrize("name", sorted(optcore.OPTIMIZERS))
def test_each_optimizer_gets_exactly_the_hyperparameters_it_declares(name):
    opt = build_optimizer({**EVERY, "optimizer": name})
    assert opt.hyperparams() == {h: EVERY[h] for h in optcore.hyperparameter_names(name)}


@pytest.mark.parametrize("name", [n for n in optcore.schedule_names() if "exponential" not in n])
@pytest.mark.parametrize(("unit", "per_step"), [("epoch", 1), ("iteration", 5)])
def test_each_schedule_is_built_as_optcore_builds_it_from_its_own_parameters(name, unit, per_step):
    epochs = 10
    built = build_schedule({**EVERY, "schedule": name}, epochs, 5, unit)
    own = {k: EVERY[k] for k in optcore.schedule_parameters(name) if k in EVERY and k != "lr"}
    if name.startswith("warmup_"):
        own["warmup_steps"] = EVERY["warmup_epochs"] * per_step
    expected = optcore.make_schedule(name, lr=EVERY["lr"], total_steps=epochs * per_step, **own)
    assert built == expected


def test_exponential_takes_its_decay_rate_when_gamma_is_searched_for_another_schedule():
    built = build_schedule({"lr": 0.1, "schedule": "exponential", "gamma": 0.5, "decay_rate": 0.1}, 10, 5, "epoch")
    assert built == optcore.make_schedule("exponential", lr=0.1, decay_rate=0.1)
