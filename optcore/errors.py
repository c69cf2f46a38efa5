"""Errors raised by optcore, written for people: they name the thing, the value and what is allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optcore.history import History


class OptcoreError(ValueError):
    """Base class of optcore's user-facing errors."""


class UnknownNameError(OptcoreError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __init__(self, kind: str, name: object, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class DivergenceError(OptcoreError, ArithmeticError):
    """The training cost became NaN or infinite. Carries the partial History up to the last finished epoch."""

    def __init__(self, epoch: int, iteration: int, cost: float, history: History):
        self.epoch, self.iteration, self.cost, self.history = epoch, iteration, cost, history
        super().__init__(f"cost diverged at epoch {epoch}, iteration {iteration} (cost = {cost})")
