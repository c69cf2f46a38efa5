"""What values a spec may hold: value domains, the hyperparameter and dataset-parameter tables, objectives,
and the arguments each sampler and pruner takes (with their defaults).

Names (datasets, optimizers, schedules, activations) are checked against optcore's registries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AfterValidator

from sweeps.spec_errors import Problems, SpecError, _show

# ---------------------------------------------------------------------------------------------------------
# Names the spec is checked against. optcore's registries are the truth; until optcore exports them, the
# fallback lists below (kept in step with optcore by hand, in this one place) stand in.

_FALLBACK_DATASETS: dict[str, tuple[dict[str, object], int | None]] = {  # name: (default params, fixed size)
    "moons": ({"n_samples": 1000, "noise": 0.2}, None),
    "circles": ({"n_samples": 1000, "noise": 0.1, "factor": 0.5}, None),
    "blobs": ({"n_samples": 1000, "n_features": 2, "n_classes": 3, "cluster_std": 1.0}, None),
    "classification": (
        {"n_samples": 1000, "n_features": 20, "n_informative": 2, "n_redundant": 2, "n_classes": 2}
        | {"class_sep": 1.0, "flip_y": 0.01},
        None,
    ),
    "regression": ({"n_samples": 1000, "n_features": 10, "n_informative": 10, "noise": 0.1}, None),
    "digits": ({}, 1797),
    "breast_cancer": ({}, 569),
    "iris": ({}, 150),
    "wine": ({}, 178),
    "diabetes": ({}, 442),
}
_FALLBACK_REGISTRIES: dict[str, list[str]] = {
    "DATASETS": list(_FALLBACK_DATASETS),
    "OPTIMIZERS": ["gd", "momentum", "rmsprop", "adam", "adamw", "adagrad"],
    # and warmup_<name> for every name here: warmup joined to a schedule (see _is_known)
    "SCHEDULES": ["constant", "step", "exponential", "inverse_time", "polynomial", "cosine", "cosine_restarts"],
    "ACTIVATIONS": ["relu", "leaky_relu", "tanh", "sigmoid"],
}


def _registry_names(kind: str) -> list[str]:
    """The names in optcore's registry ``kind`` ("DATASETS", "OPTIMIZERS", …), or the fallback list."""
    try:
        import optcore

        return sorted(getattr(optcore, kind))
    except (ImportError, AttributeError):
        return sorted(_FALLBACK_REGISTRIES[kind])


def _dataset_info(name: str) -> tuple[dict[str, object], int | None]:
    """(default parameters, fixed size or None) of dataset ``name``; a generated one's size is n_samples."""
    try:
        import optcore

        info = optcore.DATASETS[name]
        return dict(info.defaults), info.n_samples
    except (ImportError, AttributeError, KeyError):
        defaults, size = _FALLBACK_DATASETS[name]
        return dict(defaults), size


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

# Hyperparameters a search may name, in the order error messages list them, with the domains optcore's
# optimizers and schedules accept. batch_size is also bounded by the training split's size (Spec._check_across).
HYPERPARAMETERS: dict[str, _Domain] = {
    "batch_size": _int(1),
    "optimizer": _Domain("name", registry="OPTIMIZERS"),
    "lr": _POSITIVE,
    "beta1": _BETA,
    "beta2": _BETA,
    "eps": _POSITIVE,
    "nesterov": _BOOL,
    "weight_decay": _float(0),
    "schedule": _Domain("name", registry="SCHEDULES"),
    "decay_rate": _float(0),
    "gamma": _float(0, 1, open_low=True),
    "step_size": _int(1),
    "interval": _int(1),
    "power": _POSITIVE,
    "end_lr": _float(0),
    "min_lr": _float(0),
    "t0": _int(1),
    "t_mult": _int(1),
    "warmup_epochs": _int(1),
    "warmup_start_factor": _PROBABILITY,
}
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

OBJECTIVES: dict[str, str] = {  # objective: Optuna direction
    "final_val_cost": "minimize",
    "min_val_cost": "minimize",
    "final_train_cost": "minimize",
    "train_seconds": "minimize",
}

# Arguments a sampler block may set, with the value passed when it does not. Optuna 5 changed several
# sampler defaults, so every value is pinned here and passed explicitly by sweeps.samplers.
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
