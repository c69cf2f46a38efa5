"""The learning rate each size trains at in ``sweeps batch-size``: a rule, looked up by name.

A fixed learning rate favours small batches: a size-B step averages B gradients, so an epoch of large batches
takes fewer, less noisy steps and, at the same rate, moves the weights less. ``--lr-rule`` says how the rate
follows the size, with η₀ the held rate (the spec's fixed ``lr``, or the best trial's with ``--from-best``) and
B_ref the reference size (``--lr-reference``, else the spec's fixed batch size, or the best trial's)::

    fixed   η(B) = η₀                          the same rate for every size (the lecture's rule)
    linear  η(B) = η₀ · B / B_ref              Goyal et al. 2017, for SGD with momentum
    sqrt    η(B) = η₀ · √(B / B_ref)           Krizhevsky 2014; keeps the update's noise level (Adam)
    tuned   η(B) = the best of N trials of a search of log lr over [lo, hi], one search per size

``tuned`` is the fair comparison of Shallue et al. 2018 (every size at its own best rate). [lo, hi] is the
spec's lr range when lr is declared as one, else one decade either side of η₀, [η₀/10, 10 η₀]. Each size's
search is an Optuna study (in memory; every trial is a tracked child run of the batch-size parent): its first
⌈N/2⌉ trials are a grid, the centres of ⌈N/2⌉ equal cells of log lr, the same for every size (a paired start,
spread over the whole range as a few random draws are not), and the rest are proposed by a TPE sampler seeded
with the spec's seed around the best so far, so the same command finds the same rates. A search trial trains
once under the comparison's budget with seed ``trial_seed(seed, 0)``, which no repeat uses: the repeats then
judge the chosen rates on fresh seeds, free of the luck that picked them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeps.errors import UsageError
from sweeps.spec import Spec

DEFAULT_LR_RULE = "fixed"
DEFAULT_LR_TRIALS = 8


@dataclass(frozen=True)
class LrRule:
    """A way to set each size's rate: ``scale(B, B_ref)`` = η(B) / η₀, or None when searched per size."""

    formula: str
    scale: Callable[[int, int], float] | None
    needs_reference: bool = False


LR_RULES: dict[str, LrRule] = {
    "fixed": LrRule("η(B) = η₀", lambda size, reference: 1.0),
    "linear": LrRule("η(B) = η₀ · B / B_ref", lambda size, reference: size / reference, needs_reference=True),
    "sqrt": LrRule(
        "η(B) = η₀ · √(B / B_ref)", lambda size, reference: math.sqrt(size / reference), needs_reference=True
    ),
    "tuned": LrRule("η(B) = the best of N trials of an Optuna search of log lr, per size", None),
}


def scaled_lr(rule: str, size: int, reference: int, held_lr: float) -> float:
    """η(B) under a rule that is a function of the size (``fixed``, ``linear``, ``sqrt``); see the module."""
    scale = LR_RULES[rule].scale
    if scale is None:
        raise ValueError(f"lr rule {rule!r} is searched per size, not a function of it")
    return held_lr * scale(size, reference)


def free_names(rule: str) -> tuple[str, ...]:
    """The hyperparameters the rule sets per size instead of holding: ``("lr",)`` for ``tuned``."""
    return ("lr",) if LR_RULES[check_rule(rule)].scale is None else ()


def check_rule(rule: str) -> str:
    """``rule`` if it is a known rule name; UsageError listing the names otherwise."""
    if rule not in LR_RULES:
        raise UsageError(f"--lr-rule: {rule!r} is not a rule; give one of {', '.join(LR_RULES)}")
    return rule


@dataclass(frozen=True)
class LrPlan:
    """What the rule needs, checked before anything runs: η₀, B_ref and, for ``tuned``, the range and trials."""

    rule: str
    held_lr: float | None = None
    reference: int | None = None
    trials: int | None = None
    low: float | None = None
    high: float | None = None
    range_from: str | None = None  # "spec" (the spec's lr range) or "held" (a decade either side of η₀)
    seed: int | None = None  # the sampler's

    @property
    def searched(self) -> bool:
        return LR_RULES[self.rule].scale is None

    def rate(self, size: int) -> float:
        return scaled_lr(self.rule, size, self.reference or size, self.held_lr)

    def extremes(self, size: int) -> list[float]:
        """The rates a size may train at: its one rate, or the ends of the searched range."""
        return [self.low, self.high] if self.searched else [self.rate(size)]

    def grid(self) -> list[float]:
        """The search's first trials: ``lo · (hi/lo)^((i + ½)/k)`` for i < k = ⌈N/2⌉."""
        k = (self.trials + 1) // 2
        return [self.low * (self.high / self.low) ** ((i + 0.5) / k) for i in range(k)]

    def describe(self) -> str:
        text = f"{self.rule}, {LR_RULES[self.rule].formula}"
        if self.held_lr is not None and self.rule != "tuned":
            text += f" with η₀ = {self.held_lr:g}"
        if self.reference is not None:
            text += f", B_ref = {self.reference}"
        if self.searched:
            source = "the spec's lr range" if self.range_from == "spec" else f"a decade either side of {self.held_lr:g}"
            text += (
                f"; {self.trials} trials per size over [{self.low:.3g}, {self.high:.3g}] ({source}): a grid of "
                f"{len(self.grid())}, then TPE with sampler seed {self.seed}"
            )
        return text


def plan_lr(
    spec: Spec,
    rule: str = DEFAULT_LR_RULE,
    trials: int | None = None,
    reference: int | None = None,
    best: Mapping[str, object] | None = None,
) -> LrPlan:
    """Check the rule's options against the spec (UsageError, one line, nothing written) and return its plan.

    ``best`` is the held setting of ``--from-best``. Refused: an unknown rule; ``trials`` without ``tuned`` or
    < 2; ``reference`` with a rule that does not scale, or < 1; ``linear``/``sqrt`` without a reference size;
    ``tuned`` when the spec's lr is neither a range nor held (e.g. searched over choices, without --from-best).
    """
    check_rule(rule)
    kind = LR_RULES[rule]
    entry = spec.search["lr"]
    held = best.get("lr") if best is not None else entry.value if entry.kind == "fixed" else None
    held = float(held) if isinstance(held, int | float) and not isinstance(held, bool) else None
    if trials is not None and kind.scale is not None:
        raise UsageError(f"--lr-trials: applies to --lr-rule tuned only, not to --lr-rule {rule}")
    if reference is not None and not kind.needs_reference:
        raise UsageError(f"--lr-reference: applies to --lr-rule linear or sqrt only, not to --lr-rule {rule}")
    if kind.scale is not None:
        if held is None:  # held_setting names a searched lr first; this is the fallback (an lr with `when`)
            raise UsageError(f"--lr-rule {rule}: the spec holds no lr to scale; fix it (--set search.lr.value=0.01)")
        if kind.needs_reference:
            reference = _reference(spec, rule, reference, best)
        return LrPlan(rule, held_lr=held, reference=reference)
    trials = DEFAULT_LR_TRIALS if trials is None else trials
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 2:
        raise UsageError(f"--lr-trials: {trials!r} is not allowed; give at least 2 trials per size to search lr")
    if entry.kind == "float" and entry.low > 0:
        low, high, source = float(entry.low), float(entry.high), "spec"
    elif held is not None and held > 0:
        low, high, source = held / 10, held * 10, "held"
    else:
        what = f"searched over choices {entry.choices}" if entry.kind == "categorical" else f"declared as {entry}"
        raise UsageError(
            f"--lr-rule tuned: the spec's lr is {what}, which gives neither a range to search nor a held rate "
            "to search a decade either side of; declare a range (--set 'search.lr={low: 1e-4, high: 0.1, log: "
            "true}') or fix it (--set search.lr.value=0.01), or pass --from-best"
        )
    return LrPlan(rule, held_lr=held, trials=trials, low=low, high=high, range_from=source, seed=spec.seed)


def _reference(spec: Spec, rule: str, reference: int | None, best: Mapping[str, object] | None) -> int:
    if reference is None:
        entry = spec.search["batch_size"]
        value = best.get("batch_size") if best is not None else entry.value if entry.kind == "fixed" else None
        if value is None:
            raise UsageError(
                f"--lr-rule {rule}: scales the held lr from the batch size it suits, and the spec fixes none; "
                "give --lr-reference B (e.g. --lr-reference 128)"
            )
        reference = value
    if isinstance(reference, bool) or not isinstance(reference, int) or reference < 1:
        raise UsageError(f"--lr-reference: {reference!r} is not allowed; give a batch size ≥ 1")
    return reference


@dataclass(frozen=True)
class LrTrial:
    """One trial of a size's search: the rate tried and the final validation cost it reached (NaN: diverged)."""

    batch_size: int
    number: int
    lr: float
    final_val_cost: float
    run_id: str


@dataclass
class LrChoice:
    """Each size's rate under the plan, with the search's trials for ``tuned``."""

    plan: LrPlan
    rates: dict[int, float]
    trials: list[LrTrial] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        data: dict[str, Any] = {"rule": p.rule, "formula": LR_RULES[p.rule].formula, "held_lr": p.held_lr}
        if p.reference is not None:
            data["reference"] = p.reference
        if p.searched:
            data |= {"trials": p.trials, "range": [p.low, p.high], "range_from": p.range_from, "sampler_seed": p.seed}
        data["rates"] = {str(s): lr for s, lr in self.rates.items()}
        if p.searched:
            data["search"] = [
                {"batch_size": t.batch_size, "trial": t.number, "lr": t.lr, "final_val_cost": t.final_val_cost,
                 "run_id": t.run_id}
                for t in self.trials
            ]  # fmt: skip
        data["text"] = p.describe()
        return data

    def search_by_size(self) -> dict[int, list[tuple[float, float]]]:
        """Each size's search trials as ``(lr, final validation cost)`` pairs, in the order they ran."""
        return {s: [(t.lr, t.final_val_cost) for t in self.trials if t.batch_size == s] for s in self.rates}

    def params(self) -> dict[str, object]:
        """The parent run's params (None values are left out by the caller)."""
        p = self.plan
        return {
            "lr_rule": p.rule,
            "lr_held": p.held_lr,
            "lr_reference": p.reference,
            "lr_trials": p.trials,
            "lr_low": p.low,
            "lr_high": p.high,
            "lr_sampler_seed": p.seed,
        }

    def tags(self) -> dict[str, object]:
        return {"lr_rule": self.plan.rule, "lr_by_size": ",".join(f"{s}:{lr:.4g}" for s, lr in self.rates.items())}


# train(size, lr, trial number) -> (final validation cost or NaN, run id)
TrainOne = Callable[[int, float, int], tuple[float, str]]


def choose_rates(plan: LrPlan, sizes: Sequence[int], train: TrainOne | None = None) -> LrChoice:
    """Each size's rate: the rule's formula, or for ``tuned`` the best trial of an Optuna search per size.

    ``train`` runs (and tracks) one search trial; sizes are searched one after the other, smallest first.
    A size whose every trial diverged keeps the lowest rate tried, with a note (its repeats will show it).
    """
    if not plan.searched:
        return LrChoice(plan, {s: plan.rate(s) for s in sizes})
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distribution = {"lr": optuna.distributions.FloatDistribution(plan.low, plan.high, log=True)}
    choice = LrChoice(plan, {})
    for size in sizes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=plan.seed, n_startup_trials=len(plan.grid()))
        study = optuna.create_study(direction="minimize", sampler=sampler, study_name=f"lr-bs-{size}")
        for lr in plan.grid():  # the same start for every size; TPE refines after it
            study.enqueue_trial({"lr": lr})
        for number in range(plan.trials):
            trial = study.ask(distribution)
            lr = float(trial.params["lr"])
            cost, run_id = train(size, lr, number)
            if math.isfinite(cost):
                study.tell(trial, cost)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            choice.trials.append(LrTrial(size, number, lr, cost, run_id))
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            choice.rates[size] = float(study.best_trial.params["lr"])
        else:
            choice.rates[size] = min(t.lr for t in choice.trials if t.batch_size == size)
            choice.notes.append(f"every lr trial of batch size {size} diverged; it trains at the lowest rate tried")
    return choice
