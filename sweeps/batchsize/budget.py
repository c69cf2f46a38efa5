"""What every run of a comparison gets alike: a budget of epochs or of seconds of training steps, parsed from
``--budget epochs=E|seconds=S`` and checked."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from sweeps.errors import UsageError

if TYPE_CHECKING:
    from sweeps.spec import Spec


# The most epochs a run may train: the largest epochs budget, and the cap that stops an equal-time run which
# never spends its seconds.
MAX_EPOCHS = 10_000


class Budget(NamedTuple):
    """What every run gets alike: ``("epochs", E)`` or ``("seconds", S)`` of training steps."""

    kind: str
    amount: float

    @property
    def label(self) -> str:
        return f"{self.kind}={self.amount:g}"

    def describe(self) -> str:
        if self.kind == "epochs":
            return f"equal epochs: {self.amount:g} per run"
        return (
            f"equal training time: {self.amount:g} s of training steps per run (evaluation excluded; each run "
            "stops after the step that spends it, mid-epoch if need be)"
        )


def _whole(text: str) -> int:
    value = float(text)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(text)
    return int(value)


# kind -> (parse the amount, whether it is allowed, what is allowed)
BUDGETS: dict[str, tuple[Callable[[str], float], Callable[[float], bool], str]] = {
    "epochs": (
        _whole,
        lambda v: 1 <= v <= MAX_EPOCHS and v == int(v),
        f"a whole number of epochs in [1, {MAX_EPOCHS:,}]",
    ),
    "seconds": (float, lambda v: v > 0, "a number of seconds > 0"),
}


def parse_budget(text: str) -> Budget:
    """``"epochs=20"`` or ``"seconds=7.5"`` → :class:`Budget`; raises UsageError for anything else."""
    kind, sep, amount = (part.strip() for part in text.partition("="))
    if not sep or kind not in BUDGETS:
        raise UsageError(f"--budget: {text!r} is not allowed; give epochs=E or seconds=S (e.g. --budget epochs=20)")
    parse, _, what = BUDGETS[kind]
    try:
        value = parse(amount)
    except ValueError:
        raise UsageError(f"--budget: {text!r} is not allowed; {kind} must be {what}") from None
    return check_budget((kind, value), None)


def check_budget(budget: tuple[str, float] | None, spec: Spec | None) -> Budget:
    """The budget to use: ``budget`` checked, or by default the spec's ``training.epochs``."""
    if budget is None:
        return Budget("epochs", spec.training.epochs)
    kind, amount = budget
    if kind not in BUDGETS:
        raise UsageError(f"--budget: unknown budget {kind!r}; give epochs=E or seconds=S")
    _, allowed, what = BUDGETS[kind]
    number = isinstance(amount, int | float) and not isinstance(amount, bool)
    if not (number and math.isfinite(amount) and allowed(amount)):
        raise UsageError(f"--budget: {kind}={amount} is not allowed; {kind} must be {what}")
    return Budget(kind, int(amount) if kind == "epochs" else float(amount))
