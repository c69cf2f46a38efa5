"""What a sweep leaves, read from its study: :class:`SweepResult` (the best setting, the Pareto set for two
objectives, a table of every trial) and how it is summarised."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeps.study.storage import Stores
from sweeps.study.trial_lifecycle import OUTCOME_ATTR, PARAMS_ATTR, RUN_ID_ATTR

if TYPE_CHECKING:
    import pandas as pd

    from sweeps.spec import Spec


@dataclass
class SweepResult:
    """What a finished (or stopped) sweep leaves: the study, the best setting and where it is tracked.

    For two objectives ``pareto`` lists the Pareto-optimal trials and ``best_params``/``best_value``
    describe the one of them best in the first objective (ties: the lowest trial number).
    """

    study: Any
    best_params: dict[str, Any] | None
    best_value: float | list[float] | None
    parent_run_id: str
    rows: list[dict[str, Any]]  # one per trial (:func:`trial_rows`), as the sweep ended
    stores: Stores
    pareto: list[dict[str, Any]] | None = None

    @functools.cached_property
    def trials(self) -> pd.DataFrame:
        """``rows`` as a DataFrame, made when first asked for (importing pandas costs half a second that
        ``sweeps best`` and ``sweeps trials`` do without)."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def trials_frame(study) -> pd.DataFrame:
    """One row per trial: number, state, outcome, objective value(s), the full setting and its run id."""
    import pandas as pd

    return pd.DataFrame(trial_rows(study))


def trial_rows(study) -> list[dict[str, Any]]:
    """The rows of :func:`trials_frame` as dicts (a trial's row lacks the parameters that did not apply)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        hp = t.user_attrs.get(PARAMS_ATTR) or t.params
        row = {"number": t.number, "state": t.state.name, "outcome": t.user_attrs.get(OUTCOME_ATTR, "")}
        if t.values is not None:
            row |= {"value": t.values[0]} if len(t.values) == 1 else {f"value_{i}": v for i, v in enumerate(t.values)}
        row |= {k: v for k, v in hp.items()}
        row |= {"run_id": t.user_attrs.get(RUN_ID_ATTR, ""), "fail_reason": t.user_attrs.get("fail_reason", "")}
        rows.append(row)
    return rows


def best_setting(study) -> tuple[dict[str, Any] | None, float | list[float] | None, list[dict[str, Any]] | None]:
    """(params, value, Pareto set) of the best completed trial; ties go to the lowest trial number."""
    from optuna.trial import TrialState  # here: `sweeps best` imports this module before it needs Optuna

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return None, None, None
    if len(study.directions) > 1:
        front = sorted(study.best_trials, key=lambda t: t.number)
        pareto = [
            {"number": t.number, "values": list(t.values), "params": t.user_attrs.get(PARAMS_ATTR, t.params)}
            for t in front
        ]
        first = min(pareto, key=lambda item: (item["values"][0], item["number"]))
        return first["params"], first["values"], pareto
    best = min(complete, key=lambda t: (t.value, t.number))
    return best.user_attrs.get(PARAMS_ATTR, best.params), best.value, None


def summarise(spec: Spec, study, parent_run_id: str, stores: Stores) -> SweepResult:
    params, value, pareto = best_setting(study)
    return SweepResult(study, params, value, parent_run_id, trial_rows(study), stores, pareto)
