"""The search space: one :class:`Entry` per hyperparameter, and the checks of the search as a whole
(values within each hyperparameter's domain, ``when`` conditions that name real values, no cycles, and no
searched optimizer hyperparameter in a trial whose optimizer does not take it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, model_serializer, model_validator

from sweeps.spec.blocks import _Strict
from sweeps.spec.domains import DEFAULTS, HYPERPARAMETERS, REQUIRED, TAKEN_BY
from sweeps.spec.errors import Problems, SpecError, _join, _show


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
    problems = Problems()
    checked = {}
    for key, v in _values(entry):
        with problems.collect():
            checked[key] = domain.check(name, v, _join(name, key))
    if entry.step is not None and domain.kind == "int" and not isinstance(entry.step, int):
        problems.add(_join(name, "step"), f"{_show(entry.step)} is not allowed: {name} takes integer steps")
    problems.raise_any()
    update: dict[str, Any] = {"choices": list(checked.values())} if entry.kind == "categorical" else checked
    if entry.step is not None:
        update["step"] = float(entry.step) if domain.kind == "float" else entry.step
    return entry.model_copy(update=update)


def _check_when(name: str, entry: Entry, search: Mapping[str, Entry]) -> None:
    """A condition names another declared parameter, with values of its domain, some of which it takes.

    Values it cannot take alongside ones it can are fine: ``--set search.optimizer.value=adam`` must not
    break ``when: {optimizer: [momentum, adam]}``.
    """
    problems = Problems()
    for target, values in (entry.when or {}).items():
        with problems.collect():
            _check_condition(name, target, values, search)
    problems.raise_any()


def _check_condition(name: str, target: str, values: list, search: Mapping[str, Entry]) -> None:
    path = f"{name}.when.{target}"
    if target == name:
        raise SpecError(path, f"{name} cannot depend on itself; a condition names another parameter")
    if target not in search:
        others = ", ".join(n for n in search if n != name)
        raise SpecError(path, f"unknown parameter {_show(target)}; a condition may name: {others}")
    t = search[target]
    if t.kind == "float":
        raise SpecError(
            path,
            f"{target} is a continuous range; a condition needs a parameter with choices, a value, or an integer range",
        )
    if not values:
        raise SpecError(path, f"empty list; name the values of {target} for which {name} exists")
    problems = Problems()
    for i, v in enumerate(values):  # a typo is an error …
        with problems.collect():
            HYPERPARAMETERS[target].check(target, v, f"{path}[{i}]")
    problems.raise_any()
    if not any(t.can_take(v) for v in values):  # … and so is an entry that can never exist
        raise SpecError(path, f"{_show(values)} is not allowed: {target} {_takes(t)}, so {name} never exists")


# The choices whose hyperparameters may be searched only where they are taken. A schedule's parameter
# searched across schedules that do not take it (gamma with schedule: {choices: [step, cosine]}) is still
# allowed, as specs have always written it: the trainer passes it only to the schedules that take it.
_TAKEN_ONLY_WHERE_SEARCHED = ("optimizer",)


def _check_taken(name: str, search: Mapping[str, Entry]) -> None:
    """A searched optimizer hyperparameter exists only in trials whose optimizer takes it.

    Otherwise the sampler would model a value the trial drops (``beta1`` in a trial of rmsprop), so the
    search says where it applies with ``when:``. A fixed value is only recorded there (sweeps.optcore_adapter).
    """
    entry = search[name]
    if name not in TAKEN_BY or entry.kind == "fixed" or TAKEN_BY[name][0] not in _TAKEN_ONLY_WHERE_SEARCHED:
        return
    selector, takers = TAKEN_BY[name]
    possible = _possible(name, selector, search)
    idle = [v for v in possible if v not in takers]
    if not idle:
        return
    kind = f"{selector}s"
    useful = [v for v in possible if v in takers]
    shown = ", ".join(map(str, idle))
    if useful:
        fix = f"add `when: {{{selector}: [{', '.join(map(str, useful))}]}}` to {name}"
    else:
        fix = f"remove {name}, or add one of the {kind} that take it ({', '.join(takers)}) to {selector}"
    raise SpecError(
        name,
        f"{name} is searched in trials with {selector} {shown}, which does not take it (the trial would drop "
        f"it while the sampler still models it); {fix}",
    )


def _possible(name: str, selector: str, search: Mapping[str, Entry]) -> list[object]:
    """The values ``selector`` can take in a trial where entry ``name`` exists: its own choices or value,
    narrowed by every condition on it in the ``when`` of ``name`` or of an entry that ``name`` depends on.
    A selector with a ``when`` of its own is absent from some trials, which then use its default."""
    chooser = search[selector]
    values = list(chooser.choices) if chooser.kind == "categorical" else [chooser.value]
    conditions, stack, seen = [], [name], {name}
    while stack:
        for target, allowed in (search[stack.pop()].when or {}).items():
            if target == selector:
                conditions.append(allowed)
            elif target in search and target not in seen:
                seen.add(target)
                stack.append(target)
    if not conditions:
        return list(dict.fromkeys([*values, DEFAULTS[selector]])) if chooser.when and selector in DEFAULTS else values
    return [v for v in values if all(any(_same(v, a) for a in allowed) for allowed in conditions)]


def _unreachable(search: Mapping[str, Entry], overridden: Callable[[str], bool]) -> dict[str, str]:
    """Entries that overrides left in no trial: ``{entry: the overridden parameter that did it}``.

    An entry goes when its ``when`` names a parameter an override changed (``--set
    search.schedule.value=cosine``, ``--set '~search.schedule'``) and that parameter can no longer take any
    of the listed values, or names an entry that went. Such an entry would exist in no trial, so dropping it
    changes no trial. A condition the file (or an override of the condition itself) states impossibly stays
    an error: it is a mistake, not a consequence.
    """
    gone: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for name, entry in search.items():
            if name in gone or name in REQUIRED or overridden(f"{name}.when"):
                continue  # (a required entry with a condition is refused as such)
            for target, values in (entry.when or {}).items():
                cut_off = target != name and overridden(target) and _never(target, search.get(target), values)
                if target in gone or cut_off:
                    gone[name] = gone.get(target, target)
                    changed = True
                    break
    return gone


def _never(name: str, target: Entry | None, values: list) -> bool:
    """Whether a declared, discrete ``target`` can take none of ``values``, all valid values of its domain
    (a typo among them stays an error for :func:`_check_when` to report)."""
    if target is None or target.kind == "float" or not values:
        return False
    try:
        for v in values:
            HYPERPARAMETERS[name].check(name, v)
    except SpecError:
        return False
    return not any(target.can_take(v) for v in values)


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
