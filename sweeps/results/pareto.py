"""Two objectives (for example ``[final_val_cost, train_seconds]``): the Pareto set and its plot.

A trial is Pareto-optimal when no other completed trial is at least as good in both objectives and better in
one; ``sweeps best`` lists them all instead of one winner, and the parent run gets ``plots/pareto_front.png``.
"""

from __future__ import annotations

from tracking.plots import ParetoFront


def front_of(study, names: list[str]) -> ParetoFront:
    """What the parent run's ``plots/pareto_front.png`` is drawn from, with the summary
    (``tracking.plots.plot_front``): the completed trials' two values and the Pareto set among them."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    on_front = {t.number for t in study.best_trials}
    return ParetoFront(
        tuple((float(t.values[0]), float(t.values[1])) for t in complete),
        tuple(i for i, t in enumerate(complete) if t.number in on_front),
        (names[0], names[1]),
    )
