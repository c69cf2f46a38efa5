"""Stop a sweep when more trials will not help: the spec's ``stop:`` block.

Two rules, whichever fires first:

- ``after_trials_without_improvement: N`` — N finished search trials in a row (completed, pruned or failed,
  in the order they finished) none of which beat the best by more than ``min_improvement``. With
  ``min_improvement: noise`` the margin is the seed-to-seed spread of the best setting: once N search trials
  have finished, the sweep enqueues ``noise_repeats`` trials of the best setting so far (the same
  hyperparameters, new seeds, as ordinary tracked trials that count toward ``trials``), and the margin is
  the sample standard deviation (ddof=1) of their objective values. The rule waits for them. When the sweep
  has been confirmed (``sweeps confirm``, at the spec's epochs, for the same objective), its seed-to-seed
  spread is the margin instead and no repeats are spent: the standard deviation pooled over the confirmed
  settings (each setting's runs about its own mean). The stop reason says which of the two was used.
- ``max_minutes: M`` — M minutes after ``sweeps run`` started (or, for ``sweeps worker`` alone, the first
  worker of the session).

The decision lives in the Optuna study (user attribute ``stop``), so every worker — ``--workers K`` or
``sweeps worker`` on another machine — sees it before asking for its next trial and stops; trials already
running finish. The finishing process tags the MLflow parent run (``stop_reason``, ``stopped_after_trials``,
``stop_rule``). The decision is kept with the ``trials`` and ``stop`` block it was made under: resuming with
the same ones trains nothing; a larger ``--trials`` or another ``stop`` block clears it and continues (only
trials finished after that count toward the new patience).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from sweeps.results.confirm_report import confirmed
from sweeps.study.trial_lifecycle import COUNTED_OUTCOMES, OUTCOME_ATTR

STOP_ATTR = "stop"  # the decision: {"rule", "reason", "after_trials", "when", "key"}
CLOCK_ATTR = "stop_clock"  # time.time() when this session of the sweep started (max_minutes)
MARK_ATTR = "stop_counted_from"  # only trials numbered above it count toward the patience
NOISE_ATTR = "stop_noise"  # {"of_trial": n, "repeats": R}: the best setting measured over seeds
REPEAT_ATTR = "noise_repeat_of"  # on a trial: it repeats trial n's setting with its own seed

TAGS = ("stop_reason", "stop_rule", "stopped_after_trials", "stop_noise_std")


def rules_key(spec) -> str:
    """What a decision was made under: the total and the stop block (a change of either continues the sweep)."""
    stop = spec.stop.model_dump(mode="json") if spec.stop is not None else None
    return json.dumps({"trials": spec.trials, "stop": stop}, sort_keys=True)


def open_session(study, spec, *, reset_clock: bool) -> None:
    """At the start of ``run`` (``reset_clock``) or of a worker: clear a decision made under other rules, and
    start the clock of ``max_minutes`` (a worker keeps the one already set)."""
    record = study.user_attrs.get(STOP_ATTR)
    if record and record.get("key") != rules_key(spec):
        numbers = [t.number for t in study.get_trials(deepcopy=False)]
        study.set_user_attr(MARK_ATTR, max(numbers, default=-1))
        study.set_user_attr(STOP_ATTR, None)
    if reset_clock or study.user_attrs.get(CLOCK_ATTR) is None:
        study.set_user_attr(CLOCK_ATTR, time.time())


def stopped(study, spec) -> dict[str, Any] | None:
    """The decision to stop, if the sweep has stopped under ``spec``'s rules; else None."""
    record = study.user_attrs.get(STOP_ATTR)
    return record if record and record.get("key") == rules_key(spec) else None


def check(study, spec) -> dict[str, Any] | None:
    """Whether the sweep must stop now (the decision, recorded in the study the first time), else None.

    Called under the trial lock before each ``ask`` and after each trial; enqueues the noise repeats when
    they are due."""
    if spec.stop is None:
        return None
    if (record := stopped(study, spec)) is not None:
        return record
    stop = spec.stop
    if stop.max_minutes is not None:
        started = study.user_attrs.get(CLOCK_ATTR) or time.time()
        if time.time() - started >= stop.max_minutes * 60:
            return _decide(study, spec, "max_minutes", f"{stop.max_minutes:g} minutes have passed (max_minutes)")
    if stop.after_trials_without_improvement is None:
        return None
    state = Patience.of(study, spec)
    if state.margin is None:
        if stop.min_improvement == "noise" and NOISE_ATTR not in study.user_attrs:
            _measure_noise(study, spec, state)
        return None
    if state.since >= stop.after_trials_without_improvement:
        noise = f" (the noise: {state.measured.text})" if stop.min_improvement == "noise" and state.measured else ""
        margin = f"by more than {state.margin:.4g}{noise}"
        if state.best_trial is None:
            reason = f"{state.since} trials in a row and none completed (after_trials_without_improvement)"
        else:
            reason = (
                f"{state.since} trials in a row did not improve on trial {state.best_trial.number}'s "
                f"{state.best:.6g} {margin} (after_trials_without_improvement)"
            )
        return _decide(study, spec, "after_trials_without_improvement", reason, noise=state.measured)
    return None


class Patience:
    """The search trials in the order they finished, the best value, how many trials since it improved by more
    than the margin, and the margin (None while the noise is not measured yet)."""

    def __init__(self, finished: list, margin: float | None, noise: float | None, sign: float, mark: int):
        self.finished, self.margin, self.noise = finished, margin, noise
        self.measured: Noise | None = None  # where ``noise`` comes from, set by :meth:`of`
        self.best: float | None = None
        self.best_trial = None
        self.since = 0
        for t in finished:
            value = t.value if t.state.name == "COMPLETE" else None
            if value is not None and (self.best is None or sign * (self.best - value) > (margin or 0.0)):
                self.best, self.best_trial, self.since = value, t, 0
            elif t.number > mark:
                self.since += 1

    @classmethod
    def of(cls, study, spec) -> Patience:
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if _counted(t) and REPEAT_ATTR not in t.user_attrs]
        finished.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete or 0, t.number))
        measured = confirm_noise(study, spec) if spec.stop.min_improvement == "noise" else None
        if measured is None:
            std = noise_std(study, trials)
            measured = None if std is None else Noise(std, "repeats", _repeats_text(study))
        noise = measured.std if measured is not None else None
        margin = noise if spec.stop.min_improvement == "noise" else spec.stop.min_improvement
        sign = 1.0 if spec.directions[0] == "minimize" else -1.0
        state = cls(finished, margin, noise, sign, study.user_attrs.get(MARK_ATTR, -1))
        state.measured = measured
        return state


@dataclass(frozen=True)
class Noise:
    """The seed-to-seed spread of the objective: its standard deviation, where it comes from (``confirm`` or
    ``repeats``) and how it was measured, in words for the stop reason."""

    std: float
    source: str
    text: str


def confirm_noise(study, spec) -> Noise | None:
    """The spread measured by ``sweeps confirm`` on this sweep: the standard deviation pooled over its
    confirmed settings (each setting's finite values about their own mean, ddof 1 per setting), when the
    record is for the spec's first objective at the spec's epochs and some setting has two values; else None."""
    record = confirmed(study)
    if not record or record.get("objective") != spec.objectives[0]:
        return None
    budget = record.get("budget") or {}
    if budget.get("kind") != "epochs" or budget.get("amount") != spec.training.epochs:
        return None  # another training length has another spread
    squares, dof, runs, settings = 0.0, 0, 0, 0
    for row in record.get("rows") or []:
        values = [float(v) for v in row.get("values") or [] if v is not None and math.isfinite(v)]
        if len(values) >= 2:
            mean = sum(values) / len(values)
            squares += sum((v - mean) ** 2 for v in values)
            dof, runs, settings = dof + len(values) - 1, runs + len(values), settings + 1
    if dof == 0:
        return None
    text = f"the std pooled over {runs} runs of {settings} setting{'s' if settings > 1 else ''} by sweeps confirm"
    return Noise(math.sqrt(squares / dof), "confirm", text)


def _repeats_text(study) -> str:
    measured = study.user_attrs.get(NOISE_ATTR) or {}
    return f"the std of {measured.get('repeats')} repeats of trial {measured.get('of_trial')}'s setting"


def noise_std(study, trials=None) -> float | None:
    """The sample standard deviation of the noise repeats, once they have all finished; else None."""
    measured = study.user_attrs.get(NOISE_ATTR)
    if not measured:
        return None
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    repeats = [t for t in trials if t.user_attrs.get(REPEAT_ATTR) == measured["of_trial"]]
    if len(repeats) < measured["repeats"] or not all(_counted(t) for t in repeats):
        return None
    values = [t.value for t in repeats if t.state.name == "COMPLETE"]
    if len(values) < 2:  # the repeats failed or were pruned: no spread to measure, so no margin
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _measure_noise(study, spec, state: Patience) -> None:
    """Enqueue the noise repeats of the best setting once N search trials have finished."""
    n = spec.stop.after_trials_without_improvement
    finished_search = [t for t in state.finished if t.number > study.user_attrs.get(MARK_ATTR, -1)]
    best = _best_complete(state.finished, spec)
    if len(finished_search) < n or best is None:
        return
    for _ in range(spec.stop.noise_repeats):
        study.enqueue_trial(best.params, user_attrs={REPEAT_ATTR: best.number}, skip_if_exists=False)
    study.set_user_attr(NOISE_ATTR, {"of_trial": best.number, "repeats": spec.stop.noise_repeats})


def _best_complete(finished: list, spec):
    complete = [t for t in finished if t.state.name == "COMPLETE"]
    if not complete:
        return None
    sign = 1.0 if spec.directions[0] == "minimize" else -1.0
    return min(complete, key=lambda t: (sign * t.value, t.number))


def _counted(t) -> bool:
    return t.state.name in ("COMPLETE", "PRUNED") or t.user_attrs.get(OUTCOME_ATTR) in COUNTED_OUTCOMES


def _decide(study, spec, rule: str, reason: str, noise: Noise | None = None) -> dict[str, Any]:
    from sweeps.study.runner import counts  # here: runner imports this module

    record = {
        "rule": rule,
        "reason": reason,
        "after_trials": counts(study)[0],
        "when": time.time(),
        "key": rules_key(spec),
    }
    if noise is not None:
        record["noise_std"] = noise.std
        record["noise_from"] = noise.source
    study.set_user_attr(STOP_ATTR, record)
    return record


def describe(study, spec, since: float | None = None) -> list[str]:
    """Lines for people: why the sweep stopped (and that it had stopped before ``since``), and how the noise
    was measured. Empty when the spec has no stop block."""
    if spec.stop is None:
        return []
    lines = []
    record = stopped(study, spec)
    if record is not None:
        lines.append(f"stopped after {record['after_trials']} of {spec.trials} trials: {record['reason']}")
        if since is not None and record["when"] < since:
            lines.append(
                "  (it had stopped before this command: nothing was trained; raise --trials or change the "
                "stop block to continue)"
            )
    confirmed = confirm_noise(study, spec) if spec.stop.min_improvement == "noise" else None
    measured = study.user_attrs.get(NOISE_ATTR)
    if confirmed is not None:
        lines.append(f"noise: std {confirmed.std:.4g}, {confirmed.text}")
    elif measured:
        std = noise_std(study)
        shown = f"{std:.4g}" if std is not None else "not measured yet"
        lines.append(
            f"noise: std {shown} over {measured['repeats']} repeats of trial {measured['of_trial']}'s setting "
            f"(new seeds; trials with user attribute {REPEAT_ATTR}, counted toward trials)"
        )
    return lines


def bar_note(study, spec) -> str:
    """A few words for the progress bar: ``stopped: no improvement`` or ``stopped: max_minutes``."""
    record = stopped(study, spec)
    if record is None:
        return ""
    return "stopped: " + {"max_minutes": "time up", "after_trials_without_improvement": "no improvement"}.get(
        record["rule"], record["rule"]
    )


def tag_parent(sweep_run, study, spec) -> None:
    """Put the decision on the MLflow parent run (``stop_reason``, ``stop_rule``, ``stopped_after_trials``,
    ``stop_noise_std``), or take old ones off a sweep that continued and did not stop."""
    record = stopped(study, spec)
    if record is None:
        sweep_run.delete_tags(TAGS)
        return
    tags = {"stop_reason": record["reason"], "stop_rule": record["rule"]}
    tags["stopped_after_trials"] = record["after_trials"]
    if "noise_std" in record:
        tags["stop_noise_std"] = f"{record['noise_std']:.6g}"
    sweep_run.set_tags(tags)
