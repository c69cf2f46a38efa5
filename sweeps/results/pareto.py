"""Two objectives (for example ``[final_val_cost, train_seconds]``): the Pareto set and its plot.

A trial is Pareto-optimal when no other completed trial is at least as good in both objectives and better in
one; ``sweeps best`` lists them all instead of one winner, and the parent run gets ``plots/pareto_front.png``.
"""

from __future__ import annotations


def front_of(study, names: list[str]) -> tuple[list[list[float]], list[int], list[str]]:
    """What the parent run's ``plots/pareto_front.png`` is drawn from (``tracking.plots.plot_front``, with the
    summary): the completed trials' two values, the indices of the Pareto set among them, the objectives'
    names."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    on_front = {t.number for t in study.best_trials}
    return [list(t.values) for t in complete], [i for i, t in enumerate(complete) if t.number in on_front], names
