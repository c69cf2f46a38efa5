"""The sweep spec: a typed model of one YAML/TOML file, validated once, with errors written for people.

A spec names a dataset, a model, how to train it, and a search space over the training hyperparameters.
Each search entry is data::

    lr:        {low: 1.0e-4, high: 0.1, log: true}     # float range (any float bound → float)
    step_size: {low: 5, high: 20}                      # int range (both bounds ints)
    optimizer: {choices: [momentum, adam]}             # categorical
    nesterov:  {value: true}                           # fixed, not searched (shorthand: `nesterov: true`)
    beta1:     {low: 0.8, high: 0.99, when: {optimizer: [momentum, adam]}}   # exists only when …

:func:`load_spec` reads a file (or YAML text), applies ``--set key.path=value`` (and ``~key.path``) overrides
and validates. Every mistake becomes one line naming the field path, the bad value and what is allowed, and all
of them are raised together as one :class:`SpecError`.

The pieces live next door: value domains and argument tables in ``spec_domains``, the blocks in ``spec_blocks``,
search entries and their checks in ``spec_search``, reading and overrides in ``spec_parse``, errors in ``spec_errors``,
size bounds in ``spec_limits``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from sweeps.spec.blocks import DatasetSpec, ModelSpec, PrunerSpec, SamplerSpec, StopSpec, TrainingSpec, _Strict
from sweeps.spec.domains import (
    DEFAULTS,
    HYPERPARAMETERS,
    MULTI_OBJECTIVE_SAMPLERS,
    OBJECTIVES,
    PRUNER_ARGS,
    REQUIRED,
    SAMPLER_ARGS,
    _int,
    _within,
)
from sweeps.spec.errors import Problems, SpecError, _join, _show
from sweeps.spec.limits import MAX_TRIALS, check_memory
from sweeps.spec.parse import _apply_override, _errors, _overlaps, _read
from sweeps.spec.search import (
    Entry,
    Number,
    Scalar,
    _check_taken,
    _check_when,
    _fit_domain,
    _order,
    _unreachable,
    _values,
)

__all__ = [
    "DEFAULTS",
    "HYPERPARAMETERS",
    "MULTI_OBJECTIVE_SAMPLERS",
    "OBJECTIVES",
    "PRUNER_ARGS",
    "REQUIRED",
    "SAMPLER_ARGS",
    "DatasetSpec",
    "Entry",
    "ModelSpec",
    "Number",
    "PrunerSpec",
    "SamplerSpec",
    "Scalar",
    "Spec",
    "SpecError",
    "StopSpec",
    "TrainingSpec",
    "load_spec",
]


class Spec(_Strict):
    """A validated sweep spec. Build it with :func:`load_spec`; everything downstream trusts its types.

    ``search`` maps hyperparameter names to entries; defaults of undeclared ones (``DEFAULTS``) are added
    as fixed entries, so it always holds the full space.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
    seed: Annotated[int, _within(_int(0, 2**32 - 1))] = 0  # Optuna's samplers take seeds below 2**32
    trials: Annotated[int, _within(_int(1, MAX_TRIALS))]
    dataset: DatasetSpec
    model: ModelSpec
    training: TrainingSpec
    search: dict[str, Entry]
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    stop: StopSpec | None = None  # when to stop before `trials` (sweeps.study.stopping); not part of the search

    @field_validator("search")
    @classmethod
    def _check_search(cls, search: dict[str, Entry], info: ValidationInfo) -> dict[str, Entry]:
        problems = Problems()
        fitted = {}
        for name, entry in search.items():
            with problems.collect():
                fitted[name] = _fit_domain(name, entry)
        problems.raise_any()
        search = fitted | {name: Entry(value=v) for name, v in DEFAULTS.items() if name not in fitted}
        search = _drop_unreachable(search, info.context)
        for name in REQUIRED:
            if name not in search:
                problems.add(name, f"missing; {', '.join(REQUIRED)} are required (give choices, low/high, or value)")
            elif search[name].when:
                problems.add(f"{name}.when", f"{name} is needed in every trial, so it cannot have a condition")
        for name, entry in search.items():
            with problems.collect():
                _check_when(name, entry, search)
        problems.raise_any()
        _order(search)
        for name in search:
            with problems.collect():
                _check_taken(name, search)
        problems.raise_any()
        return search

    @model_validator(mode="after")
    def _check_across(self) -> Spec:
        problems = Problems()
        n_train = self.dataset.n_train  # None for a table file: its size is known once it is read
        for path, v in _values(self.search["batch_size"]):
            if n_train is not None and v > n_train:
                problems.add(
                    _join("search.batch_size", path),
                    f"{v} is not allowed: batch_size must be in "
                    f"[1, {n_train}] (the training split's size; 64–512 is the usual range)",
                )
        epochs = self.training.epochs
        if "warmup_epochs" in self.search and self._warmup_possible():
            for path, v in _values(self.search["warmup_epochs"]):
                if v >= epochs:  # the warmup would never end: optcore would refuse every such trial
                    problems.add(
                        _join("search.warmup_epochs", path),
                        f"{v} is not allowed: warmup_epochs must be < training.epochs ({epochs}), so that the "
                        "decay after the warmup has epochs to run",
                    )
        if len(self.objectives) > 1:
            if self.sampler.name not in MULTI_OBJECTIVE_SAMPLERS:
                problems.add(
                    "sampler.name",
                    f"{_show(self.sampler.name)} is not allowed with two objectives; "
                    f"sampler must be one of: {', '.join(MULTI_OBJECTIVE_SAMPLERS)}",
                )
            if self.pruner.name != "none":
                problems.add(
                    "pruner.name",
                    f"{_show(self.pruner.name)} is not allowed with two objectives "
                    "(Optuna cannot prune multi-objective trials); pruner must be 'none'",
                )
        if self.sampler.name == "grid":
            for name, entry in self.search.items():
                if entry.kind in ("int", "float") and entry.step is None:
                    problems.add(
                        f"search.{name}",
                        "a range without step is not allowed with the grid "
                        "sampler; give choices, a value, or a range with step",
                    )
        args = self.pruner.args
        if self.pruner.name == "hyperband":
            if args["max_resource"] is None:
                args["max_resource"] = self.training.epochs
            if args["max_resource"] > epochs:
                problems.add(
                    "pruner.max_resource",
                    f"{args['max_resource']} is not allowed: max_resource must be ≤ training.epochs ({epochs}), "
                    "the most epochs a trial can report",
                )
            elif args["min_resource"] > args["max_resource"]:
                problems.add(
                    "pruner.min_resource",
                    f"{args['min_resource']} is not allowed: min_resource "
                    f"must be ≤ max_resource ({args['max_resource']})",
                )
        if len(self.objectives) > 1 and self.stop and self.stop.after_trials_without_improvement is not None:
            problems.add(
                "stop.after_trials_without_improvement",
                "is not allowed with two objectives (no single best to improve on); use stop.max_minutes",
            )
        problems.errors += check_memory(self)
        problems.raise_any()
        return self

    def _warmup_possible(self) -> bool:
        """Whether a trial can have ``warmup_epochs`` together with a ``warmup_*`` schedule (the only ones
        that use it): the schedule's choices or value, narrowed by the entry's ``when`` on ``schedule``."""
        schedule = self.search["schedule"]
        names = schedule.choices if schedule.kind == "categorical" else [schedule.value]
        allowed = (self.search["warmup_epochs"].when or {}).get("schedule")
        return any(str(n).startswith("warmup_") and (allowed is None or n in allowed) for n in names)

    @property
    def objectives(self) -> list[str]:
        o = self.training.objective
        return list(o) if isinstance(o, list) else [o]

    @property
    def directions(self) -> list[str]:
        """Optuna study directions, one per objective."""
        return [OBJECTIVES[o].direction for o in self.objectives]

    def search_order(self) -> list[str]:
        """The search's names, each after the names its ``when`` depends on (declaration order otherwise)."""
        return _order(self.search)

    def setting_from_text(self, params: Mapping[str, str]) -> dict[str, object]:
        """A trial's setting from its MLflow params (text): those of the search, each read as its
        hyperparameter's type (``"64"`` → 64 for batch_size, ``"1"`` → 1.0 for gamma, ``"True"`` → True for
        nesterov); the run's other params are the sweep's fixed settings. A SpecError for text that is not a
        value of its hyperparameter."""
        return {k: HYPERPARAMETERS[k].from_text(k, v) for k, v in params.items() if k in self.search}

    def fixed_params(self) -> dict[str, object]:
        """Hyperparameters with the same value in every trial: unconditional fixed entries and defaults."""
        return {name: e.value for name, e in self.search.items() if e.kind == "fixed" and not e.when}

    def resolved(self) -> dict[str, Any]:
        """The full spec with every default filled in, as plain JSON/YAML data; it loads back to itself.
        A spec without a ``stop`` block has no ``stop`` key, so its hash is what it was before the block existed."""
        data = self.model_dump(mode="json")
        if data.get("stop") is None:
            data.pop("stop", None)
        return data

    # The spec's two hashes. Both are stored (the study's user attribute ``spec_hash`` holds the search hash;
    # the MLflow runs' tags ``spec_hash`` and ``search_hash`` hold one each), so neither value may change:
    # they differ in what they cover and, for historical reasons, in how non-ASCII text is written.

    def spec_hash(self) -> str:
        """The whole spec: first 12 hex digits of SHA-256 over the canonical JSON of :meth:`resolved`
        (non-ASCII text as UTF-8). It names the exact settings a sweep ran with (MLflow tag ``spec_hash``)."""
        return _digest(self.resolved(), ensure_ascii=False)

    def search_hash(self) -> str:
        """The sweep's identity: :meth:`spec_hash` without ``trials`` and ``stop`` (non-ASCII text as
        ``\\u`` escapes), so resuming with a larger total, or with other rules for stopping early, is the
        same sweep. A study stores it when it starts and refuses to resume from a spec with another one."""
        data = self.resolved()
        data.pop("trials", None)
        data.pop("stop", None)
        return _digest(data, ensure_ascii=True)


def _digest(data: Mapping[str, Any], *, ensure_ascii: bool) -> str:
    """First 12 hex digits of SHA-256 over ``data`` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _resolve_data_path(data: dict, source: object) -> None:
    """A relative ``dataset.path`` is read from the spec file's folder, wherever the command runs."""
    dataset = data.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str) or isinstance(source, Mapping):
        return
    if "\n" in str(source) or not os.path.isfile(source):  # YAML text: relative to the working folder
        return
    path = Path(dataset["path"]).expanduser()
    if not path.is_absolute():
        dataset["path"] = str(Path(source).resolve().parent / path)


def load_spec(path_or_text: str | os.PathLike | Mapping, overrides: Iterable[str | tuple[str, str]] = ()) -> Spec:
    """Read, override and validate a spec.

    ``path_or_text`` is a ``.yaml``/``.yml``/``.toml`` path, YAML text, or a parsed mapping. Each override
    is ``key.path=value`` with the value read as YAML (``trials=3``, ``search.batch_size.choices=[64,128]``)
    or ``~key.path`` to delete a key (``~search.beta1``), or a pair of it and how the user gave it
    (``("trials=3", "--trials 3")``), which an error it causes names (by default ``--set key.path=value``).
    Search entries that overrides leave in no trial are dropped, with a note logged (``sweeps.spec``).

    Raises :class:`SpecError` for a missing, empty or oversized file, a syntax error (with its line), an
    unknown key (also one set by an override), or any invalid value: one line per mistake naming the field,
    value and what is allowed, all mistakes together (``error.errors``).
    """
    data = _read(path_or_text)
    keys, problems = [], Problems()
    for item in overrides:
        text, shown = item if isinstance(item, tuple) else (item, f"--set {item}")
        shown = shown if len(shown) <= 100 else shown[:97] + "..."  # an error names it on one short line
        with problems.collect():
            keys.append((shown, _apply_override(data, text, shown)))
    problems.raise_any()
    _resolve_data_path(data, path_or_text)
    context: dict[str, Any] = {"overrides": keys, "notes": []}
    try:
        spec = Spec.model_validate(data, context=context)
    except ValidationError as exc:
        errors = []
        for error in _errors(exc):
            shown = [shown for shown, key in keys if error.path and _overlaps(error.path, key)]
            errors.append(SpecError(error.path, f"{error.message} (set by {shown[-1]})") if shown else error)
        raise SpecError.of(errors) from None
    for note in context["notes"]:
        logging.getLogger(__name__).warning("note: %s", note)
    return spec


def _drop_unreachable(search: dict[str, Entry], context: Mapping | None) -> dict[str, Entry]:
    """``search`` without the entries that overrides (in the validation context) left in no trial."""
    keys = (context or {}).get("overrides", [])

    def overridden(name: str) -> bool:
        return any(_overlaps(f"search.{name}", key) for _, key in keys)

    gone = _unreachable(search, overridden)
    by_cause: dict[str, list[str]] = {}
    for name, cause in gone.items():
        by_cause.setdefault(cause, []).append(name)
    for cause, names in by_cause.items():
        shown = [shown for shown, key in keys if _overlaps(f"search.{cause}", key)][-1]
        listed = ", ".join(f"search.{n}" for n in names)
        they = "it is" if len(names) == 1 else "they are"
        context["notes"].append(
            f"after {shown}, no trial meets the `when` of {listed}, so {they} dropped from the search"
        )
    return {name: entry for name, entry in search.items() if name not in gone}
