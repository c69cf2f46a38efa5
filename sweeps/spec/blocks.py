"""The spec's blocks as typed models: dataset, model, training, sampler and pruner.

:class:`_Strict` is their base (and :class:`~sweeps.spec.search.Entry`'s): unknown keys are errors listing
the allowed keys. The whole spec, :class:`~sweeps.spec.Spec`, joins them with the search.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

import optcore
from sweeps.spec.domains import (
    _BETA,
    _DATASET_PARAMS,
    OBJECTIVES,
    PRUNER_ARGS,
    SAMPLER_ARGS,
    _dataset_info,
    _Domain,
    _float,
    _int,
    _registry_names,
    _resolve_args,
    _within,
)
from sweeps.spec.errors import Problems, SpecError, _show
from sweeps.spec.parse import _errors

SOURCE_KEYS = ("name", "path", "loader", "openml")
TABLE_KEYS = ("target", "task", "impute")
TABLE_PARAMS = {"path": (), "openml": ("version", "data_home"), "loader": None}  # None: the function's own


class _Strict(BaseModel):
    """Unknown keys are errors that list the allowed keys; YAML's native types are taken as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="wrap")
    @classmethod
    def _check_keys(cls, data: Any, handler: ModelWrapValidatorHandler) -> Any:
        """Unknown keys, each with the allowed ones, reported together with the block's other mistakes."""
        data = cls._shorthand(data)
        unknown = [key for key in data if key not in cls.model_fields] if isinstance(data, dict) else []
        if not unknown:
            return handler(data)
        problems = Problems()
        for key in unknown:
            guess = difflib.get_close_matches(str(key), list(cls.model_fields), n=1, cutoff=0.75)
            hint = f" (did you mean {guess[0]!r}?)" if guess and guess[0] not in data else ""
            problems.add(str(key), f"unknown key{hint}; allowed keys: {', '.join(cls.model_fields)}")
        try:
            handler({k: v for k, v in data.items() if k in cls.model_fields})
        except ValidationError as e:
            problems.errors += [err for err in _errors(e) if not _meant(err, problems)]
        problems.raise_any()

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return data


def _meant(error: SpecError, unknown: Problems) -> bool:
    """Whether ``error`` is a missing key that one of the ``unknown`` keys was meant to be (it says so)."""
    return error.message.startswith("missing") and any(
        f"(did you mean {error.path!r}?)" in e.message for e in unknown.errors
    )


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
    """``name`` and the dataset's own parameters (defaults filled in); or a table from ``path`` (a file),
    ``loader`` (``"package.module:function"``, its keyword arguments as the other keys) or ``openml`` (a
    name or id; ``version``, ``data_home``), with ``target``, ``task`` and ``impute`` (see
    :mod:`optcore.tabular`); and the validation fraction."""

    extras: ClassVar[str] = "params"
    name: str | None = None
    path: str | None = None
    loader: str | None = None
    openml: str | int | None = None
    target: str | None = None
    task: Literal["binary", "multiclass", "regression"] | None = None
    impute: Literal["mean", "median", "most_frequent"] | None = None
    val_fraction: Annotated[float, _within(_float(0, 1, open_low=True, open_high=True))] = 0.2
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def source(self) -> str:
        """Which of ``name``, ``path``, ``loader``, ``openml`` the block gives."""
        return next((k for k in SOURCE_KEYS if getattr(self, k) is not None), "name")

    @property
    def size(self) -> int | None:
        """Samples in the dataset; None for a table (known once it is read)."""
        if self.source != "name":
            return None
        fixed = _dataset_info(self.name)[1]
        return fixed if fixed is not None else self.params["n_samples"]

    @property
    def n_train(self) -> int | None:
        """Training split size: scikit-learn's ``train_test_split`` rounds the validation part up."""
        if self.size is None:
            return None
        return self.size - math.ceil(round(self.size * self.val_fraction, 9))

    def load_kwargs(self) -> dict[str, Any]:
        """What ``optcore.load_dataset`` takes besides the name, seed and validation fraction."""
        table = {k: getattr(self, k) for k in SOURCE_KEYS[1:] + TABLE_KEYS if getattr(self, k) is not None}
        return table | self.params

    @model_serializer
    def _dump(self) -> dict[str, Any]:  # keys left unset stay out, so registry specs keep their hash
        out = {k: getattr(self, k) for k in type(self).model_fields if k != self.extras}
        return {k: v for k, v in out.items() if v is not None} | self.params

    @model_validator(mode="after")
    def _check_table(self) -> DatasetSpec:
        given = [k for k in SOURCE_KEYS if getattr(self, k) is not None]
        if len(given) != 1:
            where = given[1] if given else "name"
            raise SpecError(where, f"give exactly one of {', '.join(SOURCE_KEYS)}; got {', '.join(given) or 'none'}")
        if self.source == "name":
            for key in TABLE_KEYS:
                if getattr(self, key) is not None:
                    raise SpecError(key, "applies to a table (path, loader or openml), not to a named dataset")
            return self
        allowed = TABLE_PARAMS[self.source]
        if allowed is not None and set(self.params) - set(allowed):
            key = next(k for k in self.params if k not in allowed)
            keys = ", ".join([self.source, *TABLE_KEYS, "val_fraction", *allowed])
            raise SpecError(key, f"unknown key for a {self.source} dataset; allowed keys: {keys}")
        if self.path is not None:
            from optcore.sources import COMPRESSIONS, READERS

            path = Path(self.path)
            suffixes = [x.lower() for x in path.suffixes if x.lower() not in COMPRESSIONS]
            if not suffixes or suffixes[-1] not in READERS:
                raise SpecError("path", f"{_show(self.path)} is not allowed: the file must end in {', '.join(READERS)}")
            if not path.is_file():
                raise SpecError("path", f"{_show(self.path)}: no such file")
        return self

    @model_validator(mode="after")
    def _check_params(self) -> DatasetSpec:
        if self.source != "name":
            return self
        names = _registry_names("DATASETS")
        if self.name not in names:
            raise SpecError("name", f"{_show(self.name)} is not allowed: dataset must be one of: {', '.join(names)}")
        defaults, fixed = _dataset_info(self.name)
        checked, problems = {}, Problems()
        for key, value in self.params.items():
            if key not in defaults:
                allowed = ", ".join(["name", "val_fraction", *defaults])
                why = f" ({self.name} is bundled, with {fixed} samples)" if fixed is not None else ""
                problems.add(str(key), f"unknown key for dataset {self.name}{why}; allowed keys: {allowed}")
                continue
            domain = _DATASET_PARAMS.get(key) or _Domain("float" if isinstance(defaults[key], float) else "int")
            with problems.collect():
                checked[key] = domain.check(key, value, key)
        problems.raise_any()
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
    """The network: hidden layer sizes, activation, L2 strength, initialisation and dtype.

    ``init`` left out is optcore's pick for the activation (``optcore.ACTIVATIONS[activation].init``: he for
    relu and leaky_relu, xavier for tanh and sigmoid), written into the resolved spec so it is recorded.
    """

    hidden: list[int]
    activation: Annotated[str, _within(_Domain("name", registry="ACTIVATIONS"))] = "relu"
    l2: Annotated[float, _within(_float(0))] = 0.0
    # No default of its own: _shorthand fills in optcore's (left unset only when the activation is unknown,
    # which is an error of its own).
    init: Literal[tuple(optcore.INITS)] = Field(None, validate_default=False)  # he, xavier
    dtype: Literal["float32", "float64"] = "float32"

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "init" not in data:
            activation = data.get("activation", cls.model_fields["activation"].default)
            if isinstance(activation, str) and activation in optcore.ACTIVATIONS:
                data = {**data, "init": optcore.ACTIVATIONS[activation].init}
        return data

    @field_validator("hidden")
    @classmethod
    def _check_hidden(cls, hidden: list[int]) -> list[int]:
        problems = Problems()
        for i, units in enumerate(hidden):
            if units < 1:
                problems.add(f"[{i}]", f"{units} is not allowed: layer sizes must be ≥ 1")
        problems.raise_any()
        return hidden


class TrainingSpec(_Strict):
    """How each trial trains: epochs, the objective (one name, or two for a multi-objective search), …"""

    epochs: Annotated[int, _within(_int(1))]
    objective: str | list[str] = "final_val_cost"
    schedule_unit: Literal["epoch", "iteration"] = "epoch"
    record_minibatch: bool = False
    ewa_beta: Annotated[float, _within(_BETA)] = 0.9
    noise_scale: bool = False  # measure the gradient noise scale per epoch (optcore.train's noise_scale)

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


class StopSpec(_Strict):
    """When a sweep stops before ``trials``: after ``after_trials_without_improvement`` trials in a row that
    did not beat the best by more than ``min_improvement`` (a number, or ``noise``: the seed-to-seed spread of
    the best setting, measured by ``noise_repeats`` extra trials of it), or after ``max_minutes``; whichever
    comes first. Not part of the search (see :meth:`sweeps.spec.Spec.search_hash`): it may change on resume."""

    after_trials_without_improvement: Annotated[int, _within(_int(1))] | None = None
    min_improvement: float | str = 0.0
    noise_repeats: Annotated[int, _within(_int(2, 20))] = 3
    max_minutes: Annotated[float, _within(_float(0, open_low=True))] | None = None

    @field_validator("min_improvement", mode="before")
    @classmethod
    def _check_min_improvement(cls, value: Any) -> Any:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value == "noise" or (number and math.isfinite(value) and value >= 0):
            return float(value) if number else value
        raise SpecError(
            "",
            f"{_show(value)} is not allowed: min_improvement must be a number ≥ 0 or 'noise' (the best "
            "setting's seed-to-seed spread)",
        )

    @model_validator(mode="after")
    def _check_rules(self) -> StopSpec:
        given = self.model_fields_set
        if self.after_trials_without_improvement is None and self.max_minutes is None:
            raise SpecError(
                "",
                "give after_trials_without_improvement (with min_improvement: a number or noise), max_minutes, or both",
            )
        if self.after_trials_without_improvement is None:
            for key in ("min_improvement", "noise_repeats"):
                if key in given:
                    raise SpecError(key, "applies to after_trials_without_improvement, which is not given")
        if "noise_repeats" in given and self.min_improvement != "noise":
            raise SpecError("noise_repeats", "applies to min_improvement: noise only")
        return self
