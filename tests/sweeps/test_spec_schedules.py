"""Every schedule a spec accepts trains: the spec's names and optcore's registry cannot drift apart.

(``warmup_constant`` once passed the spec's check and then failed every trial in optcore, so the sweep
exited 0 with "no trial completed".)"""

from __future__ import annotations

import math

import pytest

import optcore
from sweeps.optcore_adapter import train_trial
from sweeps.spec import SpecError, load_spec
from sweeps.spec.domains import HYPERPARAMETERS, _registry_names
from sweeps.study.trial_lifecycle import setup_from_spec

# An in-domain value for every schedule parameter a search may name; each schedule takes the ones it uses.
SCHEDULE_VALUES = {
    "step_size": 1,
    "gamma": 0.5,
    "decay_rate": 0.1,
    "interval": 1,
    "power": 2.0,
    "end_lr": 0.01,
    "min_lr": 0.01,
    "t0": 1,
    "t_mult": 2,
}
WARMUP_VALUES = {"warmup_epochs": 1, "warmup_start_factor": 0.2}


def _spec_accepts(name: str) -> bool:
    try:
        HYPERPARAMETERS["schedule"].check("schedule", name)
    except SpecError:
        return False
    return True


def _accepted_schedules() -> list[str]:
    """The schedule names the spec accepts, from the spec's own list of names and its warmup_ rule."""
    names = _registry_names("SCHEDULES")
    candidates = [*names, *(f"warmup_{n}" for n in names), *(f"warmup_warmup_{n}" for n in names)]
    return [n for n in candidates if _spec_accepts(n)]


def test_the_spec_accepts_exactly_the_schedules_optcore_builds():
    assert sorted(_accepted_schedules()) == sorted(optcore.schedule_names())


@pytest.mark.parametrize("name", _accepted_schedules())
def test_every_schedule_the_spec_accepts_trains(name):
    search = {"batch_size": 32, "optimizer": "gd", "lr": 0.1, "schedule": name, **SCHEDULE_VALUES}
    if name.startswith("warmup_"):
        search |= WARMUP_VALUES
    spec = load_spec(
        {
            "name": "every-schedule",
            "trials": 1,
            "dataset": {"name": "moons", "n_samples": 200, "val_fraction": 0.25},
            "model": {"hidden": [4]},
            "training": {"epochs": 3},
            "search": search,
            "sampler": {"name": "random"},
            "pruner": {"name": "none"},
        }
    )
    history = train_trial(setup_from_spec(spec), spec.fixed_params(), seed=0)
    assert len(history.val_cost) == 3 and all(math.isfinite(c) for c in history.val_cost)
    assert all(lr > 0 for lr in history.lr)
