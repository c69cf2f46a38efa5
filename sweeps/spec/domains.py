"""What values a spec may hold: value domains, the hyperparameter and dataset-parameter tables, objectives,
and the arguments each sampler and pruner takes (with their defaults).

Names (datasets, optimizers, schedules, activations) are checked against optcore's registries, and the
search's hyperparameters against what optcore's optimizers and schedules declare (``HYPERPARAMETERS``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AfterValidator

import optcore
from sweeps.spec.errors import Problems, SpecError, _show

# ---------------------------------------------------------------------------------------------------------
# Names the spec is checked against: optcore's registries.


def _registry_names(kind: str) -> list[str]:
    """The names in optcore's registry ``kind`` ("DATASETS", "OPTIMIZERS", "SCHEDULES", "ACTIVATIONS")."""
    return sorted(getattr(optcore, kind))


def _dataset_info(name: str) -> tuple[dict[str, object], int | None]:
    """(default parameters, fixed size or None) of dataset ``name``; a generated one's size is n_samples."""
    info = optcore.DATASETS[name]
    return dict(info.defaults), info.n_samples


def _is_known(kind: str, value: object) -> bool:
    if not isinstance(value, str):
        return False
    if kind == "SCHEDULES" and value.startswith("warmup_"):
        value = value.removeprefix("warmup_")  # warmup + any schedule is a schedule (two joined)
        if value.startswith("warmup_"):
            return False
    return value in _registry_names(kind)


# ---------------------------------------------------------------------------------------------------------
# Domains: what values a hyperparameter, dataset parameter, or sampler/pruner argument may take.


@dataclass(frozen=True)
class _Domain:
    kind: Literal["int", "float", "bool", "name"]
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    registry: str = ""  # kind "name": the optcore registry holding the valid names

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"
        if self.low is not None:
            return f"{'>' if self.open_low else '≥'} {self.low}"
        return f"{'<' if self.open_high else '≤'} {self.high}" if self.high is not None else ""

    def _in_range(self, v: float) -> bool:
        lo, hi = self.low, self.high
        return (lo is None or (v > lo if self.open_low else v >= lo)) and (
            hi is None or (v < hi if self.open_high else v <= hi)
        )

    def from_text(self, name: str, text: str) -> Any:
        """The value that ``str()`` wrote as ``text`` (an MLflow param), read as this domain's type and checked
        against it; a SpecError when the text is not such a value."""
        readers: dict[str, Any] = {
            "int": int,
            "float": float,
            "bool": {"True": True, "False": False}.__getitem__,
            "name": str,
        }
        try:
            value = readers[self.kind](text)
        except (KeyError, ValueError):
            raise SpecError(name, f"{_show(text)} is not a value of {name}, which is {self._kind_text()}") from None
        return self.check(name, value, name)

    def _kind_text(self) -> str:
        return {"int": "an integer", "float": "a number", "bool": "true or false", "name": "a name"}[self.kind]

    def check(self, name: str, value: object, path: str = "") -> Any:
        """``value`` as this domain's type (ints become floats for a float domain); else a SpecError."""

        def reject(allowed: str) -> SpecError:
            return SpecError(path, f"{_show(value)} is not allowed: {name} must be {allowed}")

        if self.kind == "bool":
            if not isinstance(value, bool):
                raise reject("true or false")
            return value
        if self.kind == "name":
            if not _is_known(self.registry, value):
                names = _registry_names(self.registry)
                more = ", or warmup_<schedule>" if self.registry == "SCHEDULES" else ""
                raise reject(f"one of: {', '.join(names)}{more}")
            return value
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind == "int" and not (numeric and isinstance(value, int)):
            raise reject(f"an integer {self._range()}".strip())
        if self.kind == "float":
            if not (numeric and math.isfinite(value)):
                raise reject(f"a number {self._range()}".strip())
            value = float(value)
        if not self._in_range(value):
            raise reject(self._range())
        return value


def _int(low: int | None = None, high: int | None = None) -> _Domain:
    return _Domain("int", low, high)


def _float(low=None, high=None, *, open_low=False, open_high=False) -> _Domain:
    return _Domain("float", low, high, open_low, open_high)


_BOOL = _Domain("bool")
_PROBABILITY = _float(0, 1)
_POSITIVE = _float(0, open_low=True)
_BETA = _float(0, 1, open_high=True)

# ---------------------------------------------------------------------------------------------------------
# The search's hyperparameters: optcore's optimizers and schedules declare them (name, type, interval,
# default); the spec reads those declarations and copies none of them.

# optcore's names that a search does not use as they are: the schedule's length of training is given by the
# trainer from training.epochs, and a warmup's length is searched in epochs (the trainer converts it).
GIVEN_BY_TRAINER = ("total_steps",)
SEARCH_NAME = {"warmup_steps": "warmup_epochs"}  # optcore's name -> the search's name
# The choice that selects a hyperparameter's owner, and that owner's registry.
SELECTORS = {"optimizer": "OPTIMIZERS", "schedule": "SCHEDULES"}


def _declarations(selector: str) -> dict[str, tuple[optcore.Hyperparameter, ...]]:
    """What each optimizer (``selector="optimizer"``) or schedule (warmup variants too) declares, by name."""
    if selector == "optimizer":
        return {name: optcore.optimizer_hyperparameters(name) for name in optcore.OPTIMIZERS}
    return {name: optcore.schedule_hyperparameters(name) for name in optcore.schedule_names()}


def _plain(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x  # messages say [0, 1), not [0.0, 1.0)


def spec_domain(h: optcore.Hyperparameter) -> _Domain:
    """The spec's domain of a hyperparameter optcore declares: its type and interval. A bound that is another
    hyperparameter (``min_lr ≤ lr``) is optcore's to check: it fails the trial that breaks it."""
    if h.kind is bool:
        return _BOOL
    low = None if h.low == -math.inf else _plain(h.low)
    high = None if h.high == math.inf or h.at_most else _plain(h.high)
    return _Domain(
        "int" if h.kind is int else "float",
        low,
        high,
        open_low=h.low_open and low is not None,
        open_high=h.high_open and high is not None,
    )


def _searchable() -> tuple[dict[str, _Domain], dict[str, tuple[str, tuple[str, ...]]]]:
    """(every hyperparameter a search may name with its domain, and for those that some optimizer or schedule
    does not take: the selector and the names that take it). batch_size is also bounded by the training
    split's size (Spec._check_across)."""
    domains: dict[str, _Domain] = {"batch_size": _int(1)}
    owners: dict[str, tuple[str, tuple[str, ...]]] = {}
    for selector, registry in SELECTORS.items():
        domains[selector] = _Domain("name", registry=registry)
        declared = _declarations(selector)
        for h in (h for hs in declared.values() for h in hs if h.name not in GIVEN_BY_TRAINER):
            name = SEARCH_NAME.get(h.name, h.name)
            if domains.setdefault(name, spec_domain(h)) != spec_domain(h):
                raise AssertionError(f"optcore declares {h.name} with two domains; a search has one per name")
            takers = tuple(n for n, hs in declared.items() if any(d.name == h.name for d in hs))
            if len(takers) < len(declared):
                owners[name] = (selector, takers)
    return domains, owners


# Hyperparameters a search may name, in the order error messages list them; and which optimizers or
# schedules take those that not all of them take (``beta1``: momentum, adam, adamw).
HYPERPARAMETERS, TAKEN_BY = _searchable()
REQUIRED = ("batch_size", "optimizer", "lr")  # must be declared, and present in every trial
DEFAULTS: dict[str, object] = {"schedule": "constant"}  # become fixed entries when not declared

_DATASET_PARAMS: dict[str, _Domain] = {  # a parameter not listed here must have its default's type
    "n_samples": _int(2),
    "noise": _float(0),
    "factor": _float(0, 1, open_low=True, open_high=True),
    "n_features": _int(1),
    "n_classes": _int(2),
    "n_informative": _int(1),
    "n_redundant": _int(0),
    "cluster_std": _POSITIVE,
    "class_sep": _POSITIVE,
    "flip_y": _PROBABILITY,
}


@dataclass(frozen=True)
class Objective:
    """What a sweep may optimise: its Optuna ``direction`` and ``metric``, the key of
    :meth:`optcore.History.summary` (logged once per trial run) that holds its value, and the attribute of the
    same name of a trained trial's History and of a comparison run's ``RunResult`` (``sweeps confirm``)."""

    name: str
    direction: Literal["minimize", "maximize"]
    metric: str

    def value(self, history: optcore.History) -> float:
        """The objective's value for a trained trial: the History's summary value of the same name."""
        return getattr(history, self.metric)

    def of_run(self, run) -> float:
        """The objective's value for a finished run of ``sweeps confirm`` (a
        :class:`sweeps.batchsize.stats.RunResult`): its attribute ``metric``, NaN when the run diverged."""
        return math.nan if run.failed is not None else float(getattr(run, self.metric))


# The objectives a spec may name (training.objective), one row each.
OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("final_val_cost", "minimize", "final_val_cost"),
        Objective("min_val_cost", "minimize", "best_val_cost"),
        Objective("final_train_cost", "minimize", "final_train_cost"),
        Objective("train_seconds", "minimize", "train_seconds"),
    )
}

# Arguments a sampler block may set, with the value passed when it does not. Optuna 5 changed several
# sampler defaults, so every value is pinned here and passed explicitly by sweeps.study.samplers.
SAMPLER_ARGS: dict[str, dict[str, tuple[_Domain, object]]] = {
    # Multivariate TPE models the parameters jointly; `group` lets it do so on `when` spaces (it splits the
    # space into the subspaces trials actually saw); constant_liar keeps parallel workers apart.
    "tpe": {
        "n_startup_trials": (_int(0), 10),
        "n_ei_candidates": (_int(1, 10_000), 24),  # candidates are drawn every trial: bounded, as memory is
        "multivariate": (_BOOL, True),
        "group": (_BOOL, True),
        "constant_liar": (_BOOL, True),
    },
    "random": {},
    "grid": {},
    "gp": {"n_startup_trials": (_int(0), 10), "deterministic_objective": (_BOOL, False)},
    "cmaes": {"n_startup_trials": (_int(0), 1), "with_margin": (_BOOL, False)},
    "nsga2": {
        "population_size": (_int(2, 100_000), 50),
        "crossover_prob": (_PROBABILITY, 0.9),
        "swapping_prob": (_PROBABILITY, 0.5),
    },
}
MULTI_OBJECTIVE_SAMPLERS = ("tpe", "random", "grid", "gp", "nsga2")  # Optuna's CMA-ES optimises one

# Arguments a pruner block may set. A pruner's step is an epoch (the objective reports once per epoch), so
# Optuna's *_steps arguments are named *_epochs here. hyperband's max_resource defaults to training.epochs.
_PRUNE_AFTER = {
    "warmup_epochs": (_int(0), 0),
    "n_startup_trials": (_int(0), 5),
    "interval_epochs": (_int(1), 1),
    "n_min_trials": (_int(1), 1),
}
PRUNER_ARGS: dict[str, dict[str, tuple[_Domain, object]]] = {
    "none": {},
    "median": _PRUNE_AFTER,
    "percentile": {"percentile": (_float(0, 100), 25.0), **_PRUNE_AFTER},
    "hyperband": {
        "min_resource": (_int(1), 1),
        "max_resource": (_int(1), None),
        "reduction_factor": (_int(2), 3),
        "bootstrap_count": (_int(0), 0),
    },
    "successive_halving": {
        "min_resource": (_int(1), 1),
        "reduction_factor": (_int(2), 4),
        "min_early_stopping_rate": (_int(0), 0),
        "bootstrap_count": (_int(0), 0),
    },
}


def _within(domain: _Domain) -> AfterValidator:
    """A pydantic validator checking a field against ``domain`` (the message names the field)."""
    return AfterValidator(lambda value, info: domain.check(info.field_name, value))


def _resolve_args(block: str, table: dict, name: str, given: Mapping[str, object]) -> dict[str, object]:
    """The block's arguments with defaults filled in; unknown names and arguments are SpecErrors."""
    if name not in table:
        raise SpecError("name", f"{_show(name)} is not allowed: {block} must be one of: {', '.join(table)}")
    schema, problems, resolved = table[name], Problems(), {}
    for key in given:
        if key not in schema:
            allowed = ", ".join(["name", *schema])
            problems.add(str(key), f"unknown key for the {name} {block}; allowed keys: {allowed}")
    for key, (domain, default) in schema.items():
        with problems.collect():
            resolved[key] = domain.check(key, given[key], key) if key in given else default
    problems.raise_any()
    return resolved
