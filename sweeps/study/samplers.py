"""Optuna samplers by name. Each is seeded from the spec and given every argument explicitly.

Optuna 5 changed several sampler defaults, so nothing here relies on them: the overridable arguments and
their values live in ``sweeps.spec.SAMPLER_ARGS`` (and reach us resolved), the rest are spelled out below.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable

import optuna

from sweeps.spec import Spec, SpecError


def build_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    """The sampler named by ``spec.sampler``, seeded with ``spec.seed``.

    Raises :class:`SpecError` for an unknown name, or when the sampler's optional dependency is missing.
    """
    name = spec.sampler.name
    if name not in SAMPLERS:
        raise SpecError("sampler.name", f"{name!r} is not allowed: sampler must be one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name](spec)


def check_available(spec: Spec) -> None:
    """Raise :class:`SpecError` now if the spec's sampler needs a package that is missing (``gp`` needs
    PyTorch), so that a sweep that cannot run stops before it creates any store."""
    build_sampler(spec)


def grid_space(spec: Spec) -> dict[str, list[object]]:
    """The grid sampler's space: each searched entry's choices, or its range enumerated by ``step``.

    Fixed entries are left out (they are never suggested). Spec validation guarantees every range has a step.
    """
    space: dict[str, list[object]] = {}
    for name, e in spec.search.items():
        if e.kind == "categorical":
            space[name] = list(e.choices)
        elif e.kind == "int":
            space[name] = list(range(e.low, e.high + 1, e.step))
        elif e.kind == "float":
            n = round((e.high - e.low) / e.step)
            space[name] = [min(e.low + i * e.step, e.high) for i in range(n + 1)]
    return space


def _require(module: str, sampler: str, what: str, install: str) -> None:
    try:
        missing = importlib.util.find_spec(module) is None  # also None for one blocked by sys.modules[name] = None
    except (ImportError, ValueError):  # a broken install (a parent package that fails, a module without a spec)
        missing = True
    if missing:
        raise SpecError("sampler.name", f"the {sampler} sampler needs {what}: pip install '{install}'")


def _tpe(spec: Spec) -> optuna.samplers.BaseSampler:
    a = spec.sampler.args
    # consider_prior, gamma, weights and warn_independent_sampling are deprecated in Optuna 5 and left alone.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group` is "experimental"
        return optuna.samplers.TPESampler(
            seed=spec.seed,
            n_startup_trials=a["n_startup_trials"],
            n_ei_candidates=a["n_ei_candidates"],
            multivariate=a["multivariate"],
            group=a["group"],
            constant_liar=a["constant_liar"],
        )


def _random(spec: Spec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=spec.seed)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` on the last point: sweeps drives trials with
    ``ask``/``tell``, where that call is an error, and stops at :func:`grid_size` itself."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def grid_size(spec: Spec) -> int:
    """The number of points in the grid sampler's space (the most trials a grid sweep runs)."""
    return math.prod(len(v) for v in grid_space(spec).values())


def _grid(spec: Spec) -> optuna.samplers.BaseSampler:
    return _GridSampler(grid_space(spec), seed=spec.seed)


def _gp(spec: Spec) -> optuna.samplers.BaseSampler:
    _require("torch", "gp", "PyTorch", "optsweep[torch]")
    a = spec.sampler.args
    # Categorical and conditional parameters fall back to the independent sampler by design: no warning.
    return optuna.samplers.GPSampler(
        seed=spec.seed,
        independent_sampler=optuna.samplers.RandomSampler(seed=spec.seed),
        n_startup_trials=a["n_startup_trials"],
        deterministic_objective=a["deterministic_objective"],
        warn_independent_sampling=False,
    )


def _cmaes(spec: Spec) -> optuna.samplers.BaseSampler:
    _require("cmaes", "cmaes", "the cmaes package", "cmaes")
    a = spec.sampler.args
    # CMA-ES models only numeric parameters present in every trial; categorical and `when` parameters go
    # to the independent sampler by design, so its warning is off.
    return optuna.samplers.CmaEsSampler(
        x0=None,
        sigma0=None,
        n_startup_trials=a["n_startup_trials"],
        independent_sampler=optuna.samplers.RandomSampler(seed=spec.seed),
        warn_independent_sampling=False,
        seed=spec.seed,
        consider_pruned_trials=False,
        use_separable_cma=False,
        with_margin=a["with_margin"],
        lr_adapt=False,
    )


def _nsga2(spec: Spec) -> optuna.samplers.BaseSampler:
    a = spec.sampler.args
    return optuna.samplers.NSGAIISampler(
        population_size=a["population_size"],
        mutation=None,  # uniform mutation …
        mutation_prob=None,  # … with probability 1 / (number of parameters)
        crossover=None,  # uniform crossover
        crossover_prob=a["crossover_prob"],
        swapping_prob=a["swapping_prob"],
        seed=spec.seed,
    )


SAMPLERS: dict[str, Callable[[Spec], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "grid": _grid,
    "gp": _gp,
    "cmaes": _cmaes,
    "nsga2": _nsga2,
}
