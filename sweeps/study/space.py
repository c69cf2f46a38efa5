"""The search space as data: each spec entry becomes one Optuna distribution, and ``suggest`` walks them.

Define-by-run: a conditional entry is a plain ``if`` around its ``trial.suggest_*`` call, taken in
dependency order, so a parameter whose ``when`` fails is never suggested and never recorded.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sweeps.spec import Entry, Spec

_DISTRIBUTIONS: dict[str, Callable[[Entry], BaseDistribution | None]] = {
    "categorical": lambda e: CategoricalDistribution(e.choices),
    "int": lambda e: IntDistribution(e.low, e.high, log=e.log, step=e.step or 1),
    "float": lambda e: FloatDistribution(e.low, e.high, log=e.log, step=e.step),
    "fixed": lambda e: None,
}

# The same distributions, asked of a trial; FixedTrial (which has no generic suggest) answers these too.
_SUGGEST: dict[str, Callable[[optuna.trial.BaseTrial, str, Entry], object]] = {
    "categorical": lambda trial, name, e: trial.suggest_categorical(name, e.choices),
    "int": lambda trial, name, e: trial.suggest_int(name, e.low, e.high, step=e.step or 1, log=e.log),
    "float": lambda trial, name, e: trial.suggest_float(name, e.low, e.high, step=e.step, log=e.log),
}


def distribution(entry: Entry) -> BaseDistribution | None:
    """The Optuna distribution of one entry, or None for a fixed ``value`` (fixed values are not searched).

    ``{choices: [...]}`` → CategoricalDistribution; ``{low, high}`` with both ints → IntDistribution
    (``step`` defaults to 1); any float bound → FloatDistribution; ``log`` and ``step`` carry over.
    """
    return _DISTRIBUTIONS[entry.kind](entry)


def suggest(trial: optuna.trial.BaseTrial, spec: Spec) -> dict[str, object]:
    """One trial's hyperparameters: sampled, fixed and default values, each present only when active.

    Entries are visited so that every entry comes after those its ``when`` names; fixed values go into the
    result without being suggested, so Optuna records only what it searched. Works with ``FixedTrial``.
    """
    params: dict[str, object] = {}
    for name in spec.search_order():
        entry = spec.search[name]
        if not entry.is_active(params):
            continue
        params[name] = entry.value if entry.kind == "fixed" else _SUGGEST[entry.kind](trial, name, entry)
    return params
