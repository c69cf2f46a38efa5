"""Hyperparameters declared once: name, type, interval and default, in one small typed record.

Each optimizer (``Optimizer.hyperparameters``) and each schedule (:func:`optcore.schedule_hyperparameters`)
lists the :class:`Hyperparameter` records it takes. Its constructor checks values against them, and a caller
that validates ahead of training (the sweep spec) reads the same records, so a name's domain is written in
one place only::

    BETA1 = Hyperparameter("beta1", float, 0.0, 1.0, default=0.9)       # beta1 in [0, 1), 0.9 if not given
    BETA1.check(1.0)    # OptcoreError: beta1 must be in [0, 1); got 1
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optcore.errors import OptcoreError


class _Required:
    """The default of a hyperparameter that must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: its ``name``, ``kind`` (``float``, ``int`` or ``bool``), the interval it lies in and
    its ``default`` (:data:`REQUIRED` when it must be given; ``None`` when leaving it out means something).

    The interval is ``low``..``high`` with open or closed ends (by default ``[low, high)``; ``high = inf``
    leaves it unbounded above). ``at_most`` names another hyperparameter of the same constructor that bounds
    this one from above (``min_lr ≤ lr``); that bound is checked by the constructor, which knows both.
    An ``int`` is a whole number ≥ ``low``; a ``bool`` is any value read as true or false.
    """

    name: str
    kind: type = float
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True
    default: Any = REQUIRED
    at_most: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def with_default(self, default: Any) -> Hyperparameter:
        """The same hyperparameter with another default (``beta2`` is 0.99 for RMSProp, 0.999 for Adam)."""
        return dataclasses.replace(self, default=default)

    def interval(self, high: float | None = None) -> str:
        """``[0, 1)``, ``(0, inf)``: the interval as error messages show it (``high`` overrides the bound)."""
        high = self.high if high is None else high
        return f"{'(' if self.low_open else '['}{self.low:g}, {high:g}{')' if self.high_open else ']'}"

    def check(self, value: Any, *, high: float | None = None) -> Any:
        """``value`` as this hyperparameter's type if it lies in its domain, else an :class:`OptcoreError`
        naming it, the value and what is allowed. ``high`` is the value of ``at_most`` when there is one."""
        if self.kind is bool:
            return bool(value)
        if self.kind is int:
            if int(value) != value or value < self.low:
                raise OptcoreError(f"{self.name} must be a whole number ≥ {self.low:g}; got {value}")
            return int(value)
        value = float(value)
        top = self.high if high is None else high
        ok_low = value > self.low if self.low_open else value >= self.low
        ok_high = value < top if self.high_open else value <= top
        if not (ok_low and ok_high and math.isfinite(value)):
            raise OptcoreError(f"{self.name} must be in {self.interval(top)}; got {value:g}")
        return value


def bind(
    what: str, declared: Iterable[Hyperparameter], given: Mapping[str, Any], *, word: str = "hyperparameter"
) -> dict[str, Any]:
    """The values of ``declared`` for a constructor called with ``given``: each checked, defaults filled in.

    ``what`` names the constructor in messages (``optimizer 'adam'``). An unknown name, a missing required
    one or a value outside its domain is an :class:`OptcoreError` naming it and what is allowed.
    """
    declared = list(declared)
    names = [h.name for h in declared]
    unknown = sorted(k for k in given if k not in names)
    if unknown:
        raise OptcoreError(f"{what} takes no {word} {unknown[0]!r}; it takes: {', '.join(names)}")
    missing = [h.name for h in declared if h.required and h.name not in given]
    if missing:
        raise OptcoreError(f"{what} needs {', '.join(missing)}")
    values: dict[str, Any] = {}
    for h in declared:
        value = given.get(h.name, h.default)
        if value is None and h.default is None:
            values[h.name] = None
            continue
        values[h.name] = h.check(value, high=values.get(h.at_most) if h.at_most else None)
    return values
