"""Optuna pruners by name, every argument explicit.

A pruner's step is one epoch: the objective reports the validation cost once per epoch. So the spec's
``warmup_epochs`` is Optuna's ``n_warmup_steps``, ``interval_epochs`` its ``interval_steps``, and the
resources of hyperband and successive halving are epochs (hyperband's ``max_resource`` is
``training.epochs`` unless the spec says otherwise). The values come resolved from ``sweeps.spec.PRUNER_ARGS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from sweeps.spec import Spec, SpecError


def build_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """The pruner named by ``spec.pruner``. Raises :class:`SpecError` for an unknown name."""
    name = spec.pruner.name
    if name not in PRUNERS:
        raise SpecError("pruner.name", f"{name!r} is not allowed: pruner must be one of: {', '.join(PRUNERS)}")
    return PRUNERS[name](spec.pruner.args)


def _median(a: dict[str, Any]) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=a["n_startup_trials"],
        n_warmup_steps=a["warmup_epochs"],
        interval_steps=a["interval_epochs"],
        n_min_trials=a["n_min_trials"],
    )


def _percentile(a: dict[str, Any]) -> optuna.pruners.BasePruner:
    return optuna.pruners.PercentilePruner(
        percentile=a["percentile"],
        n_startup_trials=a["n_startup_trials"],
        n_warmup_steps=a["warmup_epochs"],
        interval_steps=a["interval_epochs"],
        n_min_trials=a["n_min_trials"],
    )


def _hyperband(a: dict[str, Any]) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=a["min_resource"],
        max_resource=a["max_resource"],
        reduction_factor=a["reduction_factor"],
        bootstrap_count=a["bootstrap_count"],
    )


def _successive_halving(a: dict[str, Any]) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=a["min_resource"],  # an explicit number of epochs, not Optuna's "auto"
        reduction_factor=a["reduction_factor"],
        min_early_stopping_rate=a["min_early_stopping_rate"],
        bootstrap_count=a["bootstrap_count"],
    )


PRUNERS: dict[str, Callable[[dict[str, Any]], optuna.pruners.BasePruner]] = {
    "none": lambda a: optuna.pruners.NopPruner(),
    "median": _median,
    "percentile": _percentile,
    "hyperband": _hyperband,
    "successive_halving": _successive_halving,
}
