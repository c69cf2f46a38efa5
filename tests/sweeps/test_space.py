"""The search space: entries become Optuna distributions, and suggest() follows the `when` conditions."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FixedTrial
from test_spec import MINIMAL, QUICKSTART  # tests/ has no __init__.py: pytest puts this folder on sys.path

from sweeps.spec import Entry, load_spec
from sweeps.study.space import distribution, suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"choices": [64, 128, 256]}, CategoricalDistribution([64, 128, 256])),
        ({"choices": ["adam", "rmsprop"]}, CategoricalDistribution(["adam", "rmsprop"])),
        ({"choices": [True, False]}, CategoricalDistribution([True, False])),
        ({"low": 5, "high": 20}, IntDistribution(5, 20)),
        ({"low": 16, "high": 512, "step": 16}, IntDistribution(16, 512, step=16)),
        ({"low": 16, "high": 512, "log": True}, IntDistribution(16, 512, log=True)),
        ({"low": 0.1, "high": 0.9}, FloatDistribution(0.1, 0.9)),
        ({"low": 1, "high": 2.0}, FloatDistribution(1.0, 2.0)),  # any float bound makes a float range
        ({"low": 1.0e-4, "high": 0.1, "log": True}, FloatDistribution(1e-4, 0.1, log=True)),
        ({"low": 0.0, "high": 1.0, "step": 0.25}, FloatDistribution(0.0, 1.0, step=0.25)),
        ({"low": 0, "high": 1, "step": 0.25}, FloatDistribution(0.0, 1.0, step=0.25)),
        ({"low": 0.8, "high": 0.99, "when": {"optimizer": ["adam"]}}, FloatDistribution(0.8, 0.99)),
        ({"value": 128}, None),
        (128, None),  # shorthand for {value: 128}
        ({"value": "adam", "when": {"x": "y"}}, None),
    ],
)
def test_entry_to_distribution(entry: object, expected: object) -> None:
    assert distribution(Entry.model_validate(entry)) == expected


def test_float_parameters_get_float_distributions() -> None:
    adamw = MINIMAL.replace("optimizer: adam", "optimizer: adamw")
    spec = load_spec(adamw + "  weight_decay: {low: 0, high: 1}\n  gamma: {choices: [1]}\n")
    assert distribution(spec.search["weight_decay"]) == FloatDistribution(0.0, 1.0)
    assert distribution(spec.search["gamma"]) == CategoricalDistribution([1.0])


QUICKSTART_SPEC = load_spec(QUICKSTART)


@pytest.mark.parametrize(
    ("fixed", "expected_names"),
    [
        (
            {"batch_size": 128, "optimizer": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "schedule": "step"}
            | {"step_size": 10, "gamma": 0.5},
            ["batch_size", "optimizer", "lr", "beta1", "beta2", "schedule", "step_size", "gamma"],
        ),
        (
            {"batch_size": 64, "optimizer": "momentum", "lr": 0.1, "beta1": 0.85, "schedule": "exponential"}
            | {"decay_rate": 0.1},
            ["batch_size", "optimizer", "lr", "beta1", "schedule", "decay_rate"],
        ),
        (
            {"batch_size": 512, "optimizer": "rmsprop", "lr": 0.001, "beta2": 0.99, "schedule": "warmup_cosine"}
            | {"warmup_epochs": 3},
            ["batch_size", "optimizer", "lr", "beta2", "schedule", "warmup_epochs"],
        ),
        (
            {"batch_size": 256, "optimizer": "rmsprop", "lr": 0.001, "beta2": 0.95, "schedule": "cosine"},
            ["batch_size", "optimizer", "lr", "beta2", "schedule"],
        ),
    ],
)
def test_suggest_with_fixed_trial_follows_when(fixed: dict, expected_names: list[str]) -> None:
    # FixedTrial holds more values than are active: only the active ones may come back.
    trial = FixedTrial(fixed | {"gamma": 0.3, "decay_rate": 0.5, "warmup_epochs": 2, "step_size": 7} | fixed)
    params = suggest(trial, QUICKSTART_SPEC)
    assert sorted(params) == sorted(expected_names)
    assert params == {name: fixed[name] for name in expected_names}


def test_conditional_params_absent_when_condition_fails() -> None:
    params = suggest(
        FixedTrial({"batch_size": 64, "optimizer": "momentum", "lr": 0.01, "beta1": 0.9, "schedule": "constant"}),
        QUICKSTART_SPEC,
    )
    for name in ("beta2", "decay_rate", "step_size", "gamma", "warmup_epochs"):
        assert name not in params


def test_conditions_chain_whatever_the_declaration_order() -> None:
    spec = load_spec(
        MINIMAL
        + "  gamma: {low: 0.1, high: 0.9, when: {step_size: [5]}}\n"
        + "  step_size: {choices: [5, 10], when: {schedule: [step]}}\n"
        + "  schedule: {choices: [constant, step]}\n"
    )
    base = {"lr": 0.01}
    assert suggest(FixedTrial(base | {"schedule": "constant"}), spec) == base | {
        "batch_size": 16,
        "optimizer": "adam",
        "schedule": "constant",
    }
    deep = suggest(FixedTrial(base | {"schedule": "step", "step_size": 5, "gamma": 0.5}), spec)
    assert deep["gamma"] == 0.5
    shallow = suggest(FixedTrial(base | {"schedule": "step", "step_size": 10, "gamma": 0.5}), spec)
    assert "gamma" not in shallow and shallow["step_size"] == 10


def test_fixed_values_and_defaults_are_returned_but_not_recorded() -> None:
    spec = load_spec(MINIMAL + "  nesterov: true\n")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = suggest(trial, spec)
    assert params["batch_size"] == 16 and params["optimizer"] == "adam" and params["nesterov"] is True
    assert params["schedule"] == "constant"  # the default
    assert list(trial.params) == ["lr"]


def test_recorded_distributions_match_distribution() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        params = suggest(trial, QUICKSTART_SPEC)
        for name, dist in trial.distributions.items():
            assert dist == distribution(QUICKSTART_SPEC.search[name])
        study.tell(trial, 0.0)
        # Exactly the active entries are present, and every value lies in its entry's distribution.
        for name, entry in QUICKSTART_SPEC.search.items():
            assert (name in params) == entry.is_active(params)
            if name in params and entry.kind != "fixed":
                dist = distribution(entry)
                assert dist._contains(dist.to_internal_repr(params[name]))
