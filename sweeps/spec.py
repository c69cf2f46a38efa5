"""The sweep spec: a typed model of one YAML/TOML file, validated once, with errors written for people.

A spec names a dataset, a model, how to train it, and a search space over the training hyperparameters.
Each search entry is data::

    lr:        {low: 1.0e-4, high: 0.1, log: true}     # float range (any float bound → float)
    step_size: {low: 5, high: 20}                      # int range (both bounds ints)
    optimizer: {choices: [momentum, adam]}             # categorical
    nesterov:  {value: true}                           # fixed, not searched (shorthand: `nesterov: true`)
    beta1:     {low: 0.8, high: 0.99, when: {optimizer: [momentum, adam]}}   # exists only when …

:func:`load_spec` reads a file (or YAML text), applies ``--set key.path=value`` overrides and validates.
Every mistake becomes one :class:`SpecError` naming the field path, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)


class SpecError(ValueError):
    """A mistake in a spec. ``path`` is the dotted field path (``search.beta1.high``; ``""`` for the file).

    ``str(error)`` is ``"<path>: <message>"``, one line, ready to print for a person.
    """

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}" if path else message)


def _join(*parts: object) -> str:
    """``("search", "lr", "choices", 1)`` → ``"search.lr.choices[1]"``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p:
            out += p if not out or p.startswith("[") else f".{p}"
    return out


def _show(value: object) -> str:
    """A value as a person would write it in YAML (strings quoted), cut to one short line."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(map(_show, value)) + "]"
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


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
        "n_ei_candidates": (_int(1), 24),
        "multivariate": (_BOOL, True),
        "group": (_BOOL, True),
        "constant_liar": (_BOOL, True),
    },
    "random": {},
    "grid": {},
    "gp": {"n_startup_trials": (_int(0), 10), "deterministic_objective": (_BOOL, False)},
    "cmaes": {"n_startup_trials": (_int(0), 1), "with_margin": (_BOOL, False)},
    "nsga2": {
        "population_size": (_int(2), 50),
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
    schema = table[name]
    for key in given:
        if key not in schema:
            allowed = ", ".join(["name", *schema])
            raise SpecError(str(key), f"unknown key for the {name} {block}; allowed keys: {allowed}")
    return {k: dom.check(k, given[k], k) if k in given else default for k, (dom, default) in schema.items()}


# ---------------------------------------------------------------------------------------------------------
# The typed model.


class _Strict(BaseModel):
    """Unknown keys are errors that list the allowed keys; YAML's native types are taken as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        data = cls._shorthand(data)
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise SpecError(str(key), f"unknown key; allowed keys: {', '.join(cls.model_fields)}")
        return data

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return data


def _scalar(value: Any) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    raise SpecError("", f"{_show(value)} is not allowed: must be a string, a number, true or false")


def _number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    raise SpecError("", f"{_show(value)} is not allowed: must be a number")


Scalar = Annotated[Any, BeforeValidator(_scalar)]
Number = Annotated[Any, BeforeValidator(_number)]


def _same(a: object, b: object) -> bool:
    """Equality that keeps true apart from 1."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


class Entry(_Strict):
    """One hyperparameter of the search: ``choices``, a ``low``/``high`` range, or a fixed ``value``.

    ``when: {param: [values…]}`` makes the entry exist only in trials where every named parameter took one
    of the listed values. :attr:`kind` is ``"categorical"``, ``"int"``, ``"float"`` or ``"fixed"``.
    """

    choices: list[Scalar] | None = None
    low: Number | None = None
    high: Number | None = None
    step: Number | None = None
    log: bool = False
    value: Scalar | None = None
    when: dict[str, list[Scalar]] | None = None

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, list):
            raise SpecError("", f"a list is not an entry; write {{choices: {_show(data)}}}")
        if not isinstance(data, dict):
            return {"value": data}
        when = data.get("when")
        if isinstance(when, dict):  # `when: {schedule: step}` means `when: {schedule: [step]}`
            data = {**data, "when": {k: v if isinstance(v, list) else [v] for k, v in when.items()}}
        return data

    @property
    def kind(self) -> Literal["categorical", "int", "float", "fixed"]:
        if self.choices is not None:
            return "categorical"
        if self.value is not None:
            return "fixed"
        bounds = (self.low, self.high, self.step)
        return "int" if all(isinstance(v, int) for v in bounds if v is not None) else "float"

    def is_active(self, params: Mapping[str, object]) -> bool:
        """Whether the entry exists in a trial whose parameters so far are ``params``."""
        return all(
            name in params and any(_same(params[name], v) for v in values) for name, values in (self.when or {}).items()
        )

    def can_take(self, v: object) -> bool:
        """Whether some trial can give this entry the value ``v``."""
        if self.kind == "categorical":
            return any(_same(v, c) for c in self.choices)
        if self.kind == "fixed":
            return _same(v, self.value)
        ok = isinstance(v, int) and not isinstance(v, bool) and self.low <= v <= self.high
        return ok and (v - self.low) % (self.step or 1) == 0

    @model_validator(mode="after")
    def _check_form(self) -> Entry:
        forms = [f for f, keys in _FORMS.items() if any(getattr(self, k) is not None for k in keys)]
        if not forms:
            raise SpecError("", "empty entry; give choices, low/high, or value")
        if len(forms) > 1:
            raise SpecError("", f"{forms[0]} and {forms[1]} cannot be combined; give one of choices, low/high, value")
        if forms[0] != "low/high":
            for key in ("log", "step"):
                if getattr(self, key) not in (None, False):
                    raise SpecError(key, f"{key} applies only to low/high ranges")
        if self.choices is not None:
            if not self.choices:
                raise SpecError("choices", "empty list; give at least one choice")
            for i, c in enumerate(self.choices):
                if any(_same(c, d) for d in self.choices[:i]):
                    raise SpecError(f"choices[{i}]", f"{_show(c)} is listed twice; choices must be distinct")
        if forms[0] == "low/high":
            self._check_range()
        return self

    def _check_range(self) -> None:
        low, high, step = self.low, self.high, self.step
        if low is None or high is None:
            raise SpecError("high" if high is None else "low", "missing; a range needs both low and high")
        if low > high:
            raise SpecError("low", f"{_show(low)} is not allowed: low must be ≤ high ({_show(high)})")
        if self.log and low <= 0:
            raise SpecError("low", f"{_show(low)} is not allowed: a log range needs low > 0")
        if step is not None:
            if self.log:
                raise SpecError("step", "step cannot be combined with log: true")
            if step <= 0:
                raise SpecError("step", f"{_show(step)} is not allowed: step must be > 0")
            n = (high - low) / step
            if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
                raise SpecError("step", f"{_show(step)} is not allowed: high - low must be a multiple of step")

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        if self.kind == "categorical":
            out: dict[str, Any] = {"choices": self.choices}
        elif self.kind == "fixed":
            out = {"value": self.value}
        else:
            out = {"low": self.low, "high": self.high, "log": self.log}
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = self.when
        return out


_FORMS = {"choices": ("choices",), "low/high": ("low", "high"), "value": ("value",)}


class _Named(_Strict):
    """A block with a ``name`` whose other keys depend on that name (``{name: moons, noise: 0.2}``).

    The other keys are collected into the field named by ``extras`` and written back flat by ``resolved()``.
    A bare string is shorthand for ``{name: …}``.
    """

    extras: ClassVar[str]

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"name": data}
        if isinstance(data, dict):
            own = set(cls.model_fields) - {cls.extras}
            rest = {k: v for k, v in data.items() if k not in own}
            data = {k: v for k, v in data.items() if k in own} | {cls.extras: rest}
        return data

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in type(self).model_fields if k != self.extras}
        return out | getattr(self, self.extras)


class DatasetSpec(_Named):
    """``name``, the dataset's own parameters (defaults filled in), and the validation fraction."""

    extras: ClassVar[str] = "params"
    name: str
    val_fraction: Annotated[float, _within(_float(0, 1, open_low=True, open_high=True))] = 0.2
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def size(self) -> int:
        fixed = _dataset_info(self.name)[1]
        return fixed if fixed is not None else self.params["n_samples"]

    @property
    def n_train(self) -> int:
        """Training split size: scikit-learn's ``train_test_split`` rounds the validation part up."""
        return self.size - math.ceil(round(self.size * self.val_fraction, 9))

    @model_validator(mode="after")
    def _check_params(self) -> DatasetSpec:
        names = _registry_names("DATASETS")
        if self.name not in names:
            raise SpecError("name", f"{_show(self.name)} is not allowed: dataset must be one of: {', '.join(names)}")
        defaults, fixed = _dataset_info(self.name)
        checked = {}
        for key, value in self.params.items():
            if key not in defaults:
                allowed = ", ".join(["name", "val_fraction", *defaults])
                why = f" ({self.name} is bundled, with {fixed} samples)" if fixed is not None else ""
                raise SpecError(str(key), f"unknown key for dataset {self.name}{why}; allowed keys: {allowed}")
            domain = _DATASET_PARAMS.get(key) or _Domain("float" if isinstance(defaults[key], float) else "int")
            checked[key] = domain.check(key, value, key)
        self.params = defaults | checked
        p = self.params
        if self.name == "classification":
            if p["n_informative"] + p["n_redundant"] > p["n_features"]:
                raise SpecError(
                    "n_features",
                    f"{p['n_features']} is not allowed: n_features must be ≥ "
                    f"n_informative + n_redundant ({p['n_informative'] + p['n_redundant']})",
                )
            if p["n_classes"] * 2 > 2 ** p["n_informative"]:  # scikit-learn: 2 clusters per class
                raise SpecError(
                    "n_classes",
                    f"{p['n_classes']} is not allowed: n_classes must be ≤ "
                    f"2 ** n_informative / 2 ({2 ** p['n_informative'] // 2})",
                )
        if self.n_train < 1:
            raise SpecError("val_fraction", f"{self.val_fraction} is not allowed: it leaves no training samples")
        return self


class ModelSpec(_Strict):
    """The network: hidden layer sizes, activation, L2 strength, initialisation and dtype."""

    hidden: list[int]
    activation: Annotated[str, _within(_Domain("name", registry="ACTIVATIONS"))] = "relu"
    l2: Annotated[float, _within(_float(0))] = 0.0
    init: Literal["he", "xavier"] = "he"
    dtype: Literal["float32", "float64"] = "float32"

    @field_validator("hidden")
    @classmethod
    def _check_hidden(cls, hidden: list[int]) -> list[int]:
        for i, units in enumerate(hidden):
            if units < 1:
                raise SpecError(f"[{i}]", f"{units} is not allowed: layer sizes must be ≥ 1")
        return hidden


class TrainingSpec(_Strict):
    """How each trial trains: epochs, the objective (one name, or two for a multi-objective search), …"""

    epochs: Annotated[int, _within(_int(1))]
    objective: str | list[str] = "final_val_cost"
    schedule_unit: Literal["epoch", "iteration"] = "epoch"
    record_minibatch: bool = False
    ewa_beta: Annotated[float, _within(_BETA)] = 0.9

    @field_validator("objective", mode="before")
    @classmethod
    def _check_objective(cls, value: Any) -> Any:
        names = value if isinstance(value, list) else [value]
        if isinstance(value, list) and (len(value) != 2 or value[0] == value[1]):
            raise SpecError("", f"{_show(value)} is not allowed: a list names two different objectives")
        for i, name in enumerate(names):
            if name not in OBJECTIVES:
                where = f"[{i}]" if isinstance(value, list) else ""
                raise SpecError(
                    where, f"{_show(name)} is not allowed: objective must be one of: {', '.join(OBJECTIVES)}"
                )
        return value


class SamplerSpec(_Named):
    """The Optuna sampler by name, with its arguments (defaults filled in; see ``SAMPLER_ARGS``)."""

    extras: ClassVar[str] = "args"
    name: str = "tpe"
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_args(self) -> SamplerSpec:
        self.args = _resolve_args("sampler", SAMPLER_ARGS, self.name, self.args)
        if self.args.get("group") and not self.args["multivariate"]:
            raise SpecError("group", "true is not allowed: group needs multivariate: true")
        return self


class PrunerSpec(_Named):
    """The Optuna pruner by name, with its arguments (defaults filled in; see ``PRUNER_ARGS``)."""

    extras: ClassVar[str] = "args"
    name: str = "none"
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_args(self) -> PrunerSpec:
        self.args = _resolve_args("pruner", PRUNER_ARGS, self.name, self.args)
        return self


class Spec(_Strict):
    """A validated sweep spec. Build it with :func:`load_spec`; everything downstream trusts its types.

    ``search`` maps hyperparameter names to entries; defaults of undeclared ones (``DEFAULTS``) are added
    as fixed entries, so it always holds the full space.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
    seed: Annotated[int, _within(_int(0, 2**32 - 1))] = 0  # Optuna's samplers take seeds below 2**32
    trials: Annotated[int, _within(_int(1))]
    dataset: DatasetSpec
    model: ModelSpec
    training: TrainingSpec
    search: dict[str, Entry]
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)

    @field_validator("search")
    @classmethod
    def _check_search(cls, search: dict[str, Entry]) -> dict[str, Entry]:
        search = {name: _fit_domain(name, entry) for name, entry in search.items()}
        search |= {name: Entry(value=v) for name, v in DEFAULTS.items() if name not in search}
        for name in REQUIRED:
            if name not in search:
                raise SpecError(name, f"missing; {', '.join(REQUIRED)} are required (give choices, low/high, or value)")
            if search[name].when:
                raise SpecError(f"{name}.when", f"{name} is needed in every trial, so it cannot have a condition")
        for name, entry in search.items():
            _check_when(name, entry, search)
        _order(search)
        return search

    @model_validator(mode="after")
    def _check_across(self) -> Spec:
        n_train = self.dataset.n_train
        for path, v in _values(self.search["batch_size"]):
            if v > n_train:
                raise SpecError(
                    _join("search.batch_size", path),
                    f"{v} is not allowed: batch_size must be in "
                    f"[1, {n_train}] (the training split's size; 64–512 is the usual range)",
                )
        if len(self.objectives) > 1:
            if self.sampler.name not in MULTI_OBJECTIVE_SAMPLERS:
                raise SpecError(
                    "sampler.name",
                    f"{_show(self.sampler.name)} is not allowed with two objectives; "
                    f"sampler must be one of: {', '.join(MULTI_OBJECTIVE_SAMPLERS)}",
                )
            if self.pruner.name != "none":
                raise SpecError(
                    "pruner.name",
                    f"{_show(self.pruner.name)} is not allowed with two objectives "
                    "(Optuna cannot prune multi-objective trials); pruner must be 'none'",
                )
        if self.sampler.name == "grid":
            for name, entry in self.search.items():
                if entry.kind in ("int", "float") and entry.step is None:
                    raise SpecError(
                        f"search.{name}",
                        "a range without step is not allowed with the grid "
                        "sampler; give choices, a value, or a range with step",
                    )
        args = self.pruner.args
        if self.pruner.name == "hyperband":
            if args["max_resource"] is None:
                args["max_resource"] = self.training.epochs
            if args["min_resource"] > args["max_resource"]:
                raise SpecError(
                    "pruner.min_resource",
                    f"{args['min_resource']} is not allowed: min_resource "
                    f"must be ≤ max_resource ({args['max_resource']})",
                )
        return self

    @property
    def objectives(self) -> list[str]:
        o = self.training.objective
        return list(o) if isinstance(o, list) else [o]

    @property
    def directions(self) -> list[str]:
        """Optuna study directions, one per objective."""
        return [OBJECTIVES[o] for o in self.objectives]

    def search_order(self) -> list[str]:
        """The search's names, each after the names its ``when`` depends on (declaration order otherwise)."""
        return _order(self.search)

    def fixed_params(self) -> dict[str, object]:
        """Hyperparameters with the same value in every trial: unconditional fixed entries and defaults."""
        return {name: e.value for name, e in self.search.items() if e.kind == "fixed" and not e.when}

    def resolved(self) -> dict[str, Any]:
        """The full spec with every default filled in, as plain JSON/YAML data; it loads back to itself."""
        return self.model_dump(mode="json")

    def spec_hash(self) -> str:
        """First 12 hex digits of SHA-256 over the canonical JSON of :meth:`resolved`."""
        canonical = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------
# Checks of the search as a whole.


def _values(entry: Entry) -> Iterable[tuple[str, Any]]:
    """(relative path, value) of every value an entry states: choices, range bounds, or its value."""
    if entry.kind == "categorical":
        return [(f"choices[{i}]", v) for i, v in enumerate(entry.choices)]
    if entry.kind == "fixed":
        return [("value", entry.value)]
    return [("low", entry.low), ("high", entry.high)]


def _fit_domain(name: str, entry: Entry) -> Entry:
    """Check an entry's values against its hyperparameter's domain; ranges of a float domain become floats."""
    if name not in HYPERPARAMETERS:
        raise SpecError(name, f"unknown hyperparameter; valid names: {', '.join(HYPERPARAMETERS)}")
    domain = HYPERPARAMETERS[name]
    if entry.kind in ("int", "float") and domain.kind in ("bool", "name"):
        raise SpecError(name, f"a low/high range is not allowed: {name} takes choices or a value")
    if entry.kind == "categorical":
        update = {"choices": [domain.check(name, v, _join(name, key)) for key, v in _values(entry)]}
    else:
        update = {key: domain.check(name, v, _join(name, key)) for key, v in _values(entry)}
    if entry.step is not None:
        if domain.kind == "int" and not isinstance(entry.step, int):
            raise SpecError(_join(name, "step"), f"{_show(entry.step)} is not allowed: {name} takes integer steps")
        update["step"] = float(entry.step) if domain.kind == "float" else entry.step
    return entry.model_copy(update=update)


def _check_when(name: str, entry: Entry, search: Mapping[str, Entry]) -> None:
    """A condition names another declared parameter, with values of its domain, some of which it takes.

    Values it cannot take alongside ones it can are fine: ``--set search.optimizer.value=adam`` must not
    break ``when: {optimizer: [momentum, adam]}``.
    """
    for target, values in (entry.when or {}).items():
        path = f"{name}.when.{target}"
        if target not in search or target == name:
            others = ", ".join(n for n in search if n != name)
            raise SpecError(path, f"unknown parameter {_show(target)}; a condition may name: {others}")
        t = search[target]
        if t.kind == "float":
            raise SpecError(
                path,
                f"{target} is a continuous range; a condition needs a parameter with "
                "choices, a value, or an integer range",
            )
        if not values:
            raise SpecError(path, f"empty list; name the values of {target} for which {name} exists")
        for i, v in enumerate(values):  # a typo is an error …
            HYPERPARAMETERS[target].check(target, v, f"{path}[{i}]")
        if not any(t.can_take(v) for v in values):  # … and so is an entry that can never exist
            raise SpecError(path, f"{_show(values)} is not allowed: {target} {_takes(t)}, so {name} never exists")


def _takes(entry: Entry) -> str:
    if entry.kind == "categorical":
        return "takes only " + ", ".join(map(str, entry.choices))
    if entry.kind == "fixed":
        return f"is fixed to {_show(entry.value)}"
    return f"takes integers in [{entry.low}, {entry.high}] in steps of {entry.step or 1}"


def _order(search: Mapping[str, Entry]) -> list[str]:
    """Depth-first topological order of the `when` dependencies; a cycle is a SpecError."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*trail[trail.index(name) :], name]
            raise SpecError(f"{cycle[-2]}.when", f"conditions form a cycle: {' → '.join(cycle)}")
        state[name] = "visiting"
        for dependency in search[name].when or {}:
            visit(dependency, [*trail, name])
        state[name] = "done"
        order.append(name)

    for name in search:
        visit(name, [])
    return order


# ---------------------------------------------------------------------------------------------------------
# Reading files and applying overrides.


class _Loader(yaml.SafeLoader):
    """YAML 1.1 plus ``1e-4`` read as a float (YAML 1.1 reads it as a string), and duplicate keys rejected."""

    yaml_implicit_resolvers: ClassVar[dict] = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line
        why = f" ({e.context} on line {e.context_mark.line + 1})" if context else ""
        raise SpecError("", f"{origin}{where}: invalid YAML: {e.problem or e.context}{why}") from None
    except yaml.YAMLError as e:
        raise SpecError("", f"{origin}: invalid YAML: {e}") from None


def _parse_toml(text: str, origin: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("", f"{origin}: invalid TOML: {e}") from None


_PARSERS: dict[str, Callable[[str, str], Any]] = {".yaml": _parse_yaml, ".yml": _parse_yaml, ".toml": _parse_toml}


def _read(source: str | os.PathLike | Mapping) -> dict:
    """The raw spec data from a file path, YAML text, or an already parsed mapping."""
    if isinstance(source, Mapping):
        data, origin = copy.deepcopy(dict(source)), "spec"
    elif isinstance(source, os.PathLike) or (
        "\n" not in source and (Path(source).suffix.lower() in _PARSERS or os.path.isfile(source))
    ):
        path = Path(source)
        origin = str(path)
        if path.suffix.lower() not in _PARSERS:
            raise SpecError("", f"{origin}: unsupported file type {path.suffix!r}; use .yaml, .yml or .toml")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError("", f"{origin}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError("", f"{origin}: cannot be read: {e}") from None
        data = _PARSERS[path.suffix.lower()](text, origin)
    else:
        data, origin = _parse_yaml(source, "spec text"), "spec text"
        if isinstance(data, str) and "\n" not in source:  # a path with a typo, most likely
            raise SpecError("", f"{source}: no such file (a spec file ends in .yaml, .yml or .toml)")
    if data is None or data == {}:
        raise SpecError("", f"{origin}: the spec is empty")
    if not isinstance(data, dict):
        raise SpecError(
            "", f"{origin}: a spec is a mapping of keys (name, seed, trials, …), not a {type(data).__name__}"
        )
    return data


_FORM_OF = {"choices": "choices", "value": "value", **dict.fromkeys(("low", "high", "log", "step"), "range")}


def _apply_override(data: dict, item: str) -> str:
    """Apply one ``key.path=value`` (value read as YAML) to the raw data; returns the key path.

    Setting one form of a search entry (``search.lr.value=0.01``) drops the entry's other forms, so an
    override can fix a searched parameter or search a fixed one; its ``when`` stays.
    """
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise SpecError("", f"--set {item!r}: expected key.path=value, e.g. --set training.epochs=2")
    value = _parse_yaml(raw, f"--set {item!r}")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part, {})
        if i == 0 and part in ("dataset", "sampler", "pruner") and isinstance(child, str):
            child = {"name": child}
        if i == 1 and parts[0] == "search" and not isinstance(child, dict | list):
            child = {"value": child}
        if not isinstance(child, dict):
            raise SpecError(_join(*parts[: i + 1]), f"is {_show(child)}, not a mapping (set by --set {item})")
        node[part] = child
        node = child
    last = parts[-1]
    if len(parts) == 3 and parts[0] == "search" and last in _FORM_OF:
        for k in [k for k in node if k in _FORM_OF and _FORM_OF[k] != _FORM_OF[last]]:
            del node[k]
    node[last] = value
    return ".".join(parts)


def _first_error(exc: ValidationError) -> SpecError:
    """Pydantic's first error as one SpecError: field path, bad value, and what is allowed."""
    err = exc.errors(include_url=False)[0]
    loc, kind, ctx = err["loc"], err["type"], err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, SpecError):
        return SpecError(_join(*loc, cause.path), cause.message)
    path = _join(*loc)
    name = next((p for p in reversed(loc) if isinstance(p, str)), "value")
    if kind == "missing":
        return SpecError(path, "missing; this key is required")
    if kind == "extra_forbidden":
        return SpecError(path, "unknown key")
    if kind == "literal_error":
        allowed = f"{name} must be {ctx['expected']}"
    elif kind == "string_pattern_mismatch":
        allowed = f"{name} must be letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit)"
    elif kind in _PYDANTIC_WORDS:
        allowed = f"{name} must be {_PYDANTIC_WORDS[kind]}"
    else:
        allowed = err["msg"]
    return SpecError(path, f"{_show(err['input'])} is not allowed: {allowed}")


_PYDANTIC_WORDS = {
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    "string_type": "a string",
    "list_type": "a list",
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a mapping"),
}


def load_spec(path_or_text: str | os.PathLike | Mapping, overrides: Iterable[str] = ()) -> Spec:
    """Read, override and validate a spec.

    ``path_or_text`` is a ``.yaml``/``.yml``/``.toml`` path, YAML text, or a parsed mapping. Each override
    is ``key.path=value`` with the value read as YAML (``trials=3``, ``search.batch_size.choices=[64,128]``).

    Raises :class:`SpecError` for a missing or empty file, a syntax error (with its line), an unknown key
    (also one set by an override), or any invalid value: one line naming the field, value and what is allowed.
    """
    data = _read(path_or_text)
    keys = [(item, _apply_override(data, item)) for item in overrides]
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        error = _first_error(exc)
        for item, key in keys:
            if error.path and _overlaps(error.path, key):
                error = SpecError(error.path, f"{error.message} (set by --set {item})")
        raise error from None


def _overlaps(path: str, key: str) -> bool:
    """Whether one dotted path lies within the other (``search.lr.low`` and ``search.lr``)."""
    a, b = sorted((path, key), key=len)
    return b == a or b.startswith((a + ".", a + "["))
