"""Optimizers by name. Each is one small class over the shared :mod:`optcore.ewa`."""

from __future__ import annotations

import inspect

from optcore.errors import OptcoreError, UnknownNameError
from optcore.optimizers.adagrad import Adagrad
from optcore.optimizers.adam import Adam, AdamW
from optcore.optimizers.base import Optimizer, OptState
from optcore.optimizers.gd import GD
from optcore.optimizers.momentum import Momentum
from optcore.optimizers.rmsprop import RMSProp

OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (GD, Momentum, RMSProp, Adam, AdamW, Adagrad)}


def hyperparameter_names(name: str) -> list[str]:
    """The keyword arguments optimizer ``name`` accepts."""
    return [p for p in inspect.signature(get_optimizer_class(name).__init__).parameters if p != "self"]


def get_optimizer_class(name: str) -> type[Optimizer]:
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise UnknownNameError("optimizer", name, list(OPTIMIZERS)) from None


def make_optimizer(name: str, **hyperparams) -> Optimizer:
    """Build optimizer ``name`` (``gd``, ``momentum``, ``rmsprop``, ``adam``, ``adamw``, ``adagrad``).

    Raises :class:`UnknownNameError` for an unknown name and :class:`OptcoreError` for an unknown or
    out-of-range hyperparameter, naming it and what is allowed.
    """
    allowed = hyperparameter_names(name)
    unknown = sorted(set(hyperparams) - set(allowed))
    if unknown:
        raise OptcoreError(f"optimizer {name!r} takes no hyperparameter {unknown[0]!r}; it takes: {', '.join(allowed)}")
    if "lr" not in hyperparams:
        raise OptcoreError(f"optimizer {name!r} needs a learning rate: lr > 0")
    return OPTIMIZERS[name](**hyperparams)


__all__ = [
    "GD",
    "OPTIMIZERS",
    "Adagrad",
    "Adam",
    "AdamW",
    "Momentum",
    "OptState",
    "Optimizer",
    "RMSProp",
    "get_optimizer_class",
    "hyperparameter_names",
    "make_optimizer",
]
