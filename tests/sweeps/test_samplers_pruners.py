"""Samplers and pruners by name: each constructs, seeds make runs repeat, and bad names list the good ones."""

from __future__ import annotations

import importlib.util
import math
import sys

import optuna
import pytest

from sweeps.spec import PRUNER_ARGS, SAMPLER_ARGS, Spec, SpecError, load_spec
from sweeps.study.pruners import PRUNERS, build_pruner
from sweeps.study.samplers import SAMPLERS, build_sampler, grid_space
from sweeps.study.space import suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_CMAES = importlib.util.find_spec("cmaes") is not None
NEEDS = {
    "gp": pytest.mark.skipif(not HAS_TORCH, reason="the gp sampler needs PyTorch"),
    "cmaes": pytest.mark.skipif(not HAS_CMAES, reason="the cmaes sampler needs the cmaes package"),
}

# Every range has a step, so the grid sampler can take this space too.
TINY = """\
name: tiny
seed: 7
trials: 6
dataset: {name: iris}
model: {hidden: [4]}
training: {epochs: 3}
search:
  batch_size: {choices: [16, 32]}
  optimizer: {choices: [adam, momentum]}
  lr: {low: 0.001, high: 0.1, step: 0.001}
  beta1: {low: 0.8, high: 0.95, step: 0.05, when: {optimizer: [adam]}}
  step_size: {low: 1, high: 9, step: 2}
"""


def tiny(sampler: str, *overrides: str) -> Spec:
    startup = ["sampler.n_startup_trials=2"] if "n_startup_trials" in SAMPLER_ARGS[sampler] else []
    return load_spec(TINY, [f"sampler.name={sampler}", *startup, *overrides])


def quadratic(params: dict) -> float:
    return (
        (math.log10(params["lr"]) + 2) ** 2
        + 0.1 * (params["batch_size"] == 32)
        + (params.get("beta1", 0.9) - 0.9) ** 2
        + 0.01 * (params["step_size"] - 5) ** 2
    )


def first_params(spec: Spec, n_trials: int) -> list[dict]:
    study = optuna.create_study(sampler=build_sampler(spec), directions=spec.directions)
    study.optimize(lambda trial: quadratic(suggest(trial, spec)), n_trials=n_trials)
    return [t.params for t in study.trials]


def samplers_with_marks() -> list:
    return [pytest.param(name, marks=NEEDS[name]) if name in NEEDS else name for name in SAMPLERS]


def test_registries_match_the_spec_tables() -> None:
    assert list(SAMPLERS) == list(SAMPLER_ARGS)
    assert list(PRUNERS) == list(PRUNER_ARGS)


@pytest.mark.parametrize("name", samplers_with_marks())
def test_each_sampler_constructs(name: str) -> None:
    sampler = build_sampler(tiny(name))
    assert isinstance(sampler, optuna.samplers.BaseSampler)


@pytest.mark.parametrize("name", samplers_with_marks())
def test_same_seed_same_params(name: str) -> None:
    n = 3  # past the two startup trials, so the model-based samplers sample from their model too
    first = first_params(tiny(name), n)
    assert first_params(tiny(name), n) == first
    assert len(first) == n


@pytest.mark.parametrize("name", ["random", "tpe", "nsga2", "grid"])
def test_different_seed_different_params(name: str) -> None:
    assert first_params(tiny(name, "seed=1"), 4) != first_params(tiny(name, "seed=2"), 4)


def test_gp_without_torch_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # what Python does for a package that is not installed
    with pytest.raises(SpecError, match=r"the gp sampler needs PyTorch: pip install 'optsweep\[torch\]'"):
        build_sampler(tiny("gp"))


def test_cmaes_without_the_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cmaes", None)
    with pytest.raises(SpecError, match="the cmaes sampler needs the cmaes package: pip install"):
        build_sampler(tiny("cmaes"))


def test_unknown_sampler_lists_valid_names() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(TINY, ["sampler.name=bayes"])
    assert str(info.value) == (
        "sampler.name: 'bayes' is not allowed: sampler must be one of: tpe, random, grid, gp, cmaes, nsga2"
        " (set by --set sampler.name=bayes)"
    )
    spec = tiny("random")
    spec.sampler.name = "bayes"  # past validation, the registry still answers for itself
    with pytest.raises(SpecError, match="sampler must be one of: tpe, random, grid, gp, cmaes, nsga2"):
        build_sampler(spec)


def test_sampler_arguments_override_defaults() -> None:
    spec = tiny("tpe", "sampler.n_ei_candidates=8", "sampler.group=false")
    assert spec.sampler.args == {
        "n_startup_trials": 2,
        "n_ei_candidates": 8,
        "multivariate": True,
        "group": False,
        "constant_liar": True,
    }
    build_sampler(spec)
    with pytest.raises(SpecError, match=r"^sampler\.group: .*needs multivariate: true"):
        tiny("tpe", "sampler.multivariate=false")


def test_grid_space_enumerates_steps() -> None:
    space = grid_space(tiny("grid"))
    assert space["batch_size"] == [16, 32]
    assert space["step_size"] == [1, 3, 5, 7, 9]
    assert space["beta1"] == pytest.approx([0.8, 0.85, 0.9, 0.95])
    assert len(space["lr"]) == 100 and space["lr"][0] == 0.001 and space["lr"][-1] == 0.1
    assert "schedule" not in space  # fixed (the default) values are not searched


def test_grid_without_step_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"^search\.lr: a range without step is not allowed with the grid sampler"):
        load_spec(TINY.replace("step: 0.001", "log: true"), ["sampler=grid"])


@pytest.mark.parametrize("name", ["tpe", "random", "nsga2"])
def test_multi_objective_studies_run(name: str) -> None:
    spec = tiny(name, "training.objective=[final_val_cost, train_seconds]")
    study = optuna.create_study(sampler=build_sampler(spec), directions=spec.directions)
    study.optimize(lambda t: (quadratic(p := suggest(t, spec)), p["batch_size"] / 32), n_trials=4)
    assert len(study.best_trials) >= 1


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("none", optuna.pruners.NopPruner),
        ("median", optuna.pruners.MedianPruner),
        ("percentile", optuna.pruners.PercentilePruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
    ],
)
def test_each_pruner_constructs(name: str, cls: type) -> None:
    assert isinstance(build_pruner(load_spec(TINY, [f"pruner={name}"])), cls)


def test_unknown_pruner_lists_valid_names() -> None:
    with pytest.raises(
        SpecError, match="pruner must be one of: none, median, percentile, hyperband, successive_halving"
    ):
        load_spec(TINY, ["pruner=asha"])
    spec = load_spec(TINY)
    spec.pruner.name = "asha"
    with pytest.raises(SpecError, match="pruner must be one of: none, median"):
        build_pruner(spec)


def test_median_warmup_epochs_hold_pruning_off() -> None:
    spec = load_spec(TINY, ["pruner.name=median", "pruner.warmup_epochs=5", "pruner.n_startup_trials=2"])
    study = optuna.create_study(pruner=build_pruner(spec))
    for _ in range(3):  # good trials: cost 1 at every epoch
        trial = study.ask()
        for epoch in range(10):
            trial.report(1.0, epoch)
        study.tell(trial, 1.0)
    bad = study.ask()
    bad.report(100.0, 3)
    assert not bad.should_prune()  # epoch 3 is inside the warmup
    bad.report(100.0, 6)
    assert bad.should_prune()
