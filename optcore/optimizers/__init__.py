"""Optimizers by name. Each is one small class over the shared :mod:`optcore.ewa`."""

from __future__ import annotations

from optcore.errors import OptcoreError, UnknownNameError
from optcore.hyperparameters import Hyperparameter
from optcore.optimizers.adagrad import Adagrad
from optcore.optimizers.adam import Adam, AdamW
from optcore.optimizers.base import Optimizer, OptState
from optcore.optimizers.gd import GD
from optcore.optimizers.momentum import Momentum
from optcore.optimizers.rmsprop import RMSProp

OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (GD, Momentum, RMSProp, Adam, AdamW, Adagrad)}


def optimizer_hyperparameters(name: str) -> tuple[Hyperparameter, ...]:
    """What optimizer ``name`` takes: each hyperparameter's name, type, interval and default."""
    return get_optimizer_class(name).hyperparameters


def hyperparameter_names(name: str) -> list[str]:
    """The keyword arguments optimizer ``name`` accepts."""
    return [h.name for h in optimizer_hyperparameters(name)]


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
    cls = get_optimizer_class(name)
    if "lr" not in hyperparams and not set(hyperparams) - set(hyperparameter_names(name)):
        raise OptcoreError(f"optimizer {name!r} needs a learning rate: lr > 0")
    return cls(**hyperparams)


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
    "optimizer_hyperparameters",
]
