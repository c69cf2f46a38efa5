"""Two objectives (for example ``[final_val_cost, train_seconds]``): the Pareto set and its plot.

A trial is Pareto-optimal when no other completed trial is at least as good in both objectives and better in
one; ``sweeps best`` lists them all instead of one winner, and the parent run gets ``plots/pareto_front.png``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path


def plot_front(points: Sequence[Sequence[float]], front: Sequence[int], names: Sequence[str], path: Path) -> Path:
    """Every completed trial as a dot, the Pareto set joined as a red staircase."""
    from tracking.plots import new_figure

    figure, ax = new_figure()
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="0.55", s=18, label="trials")
        best = sorted((points[i] for i in front), key=lambda p: p[0])
        ax.step(
            [p[0] for p in best], [p[1] for p in best], where="post", color="tab:red", marker="o", label="Pareto set"
        )
        ax.legend()
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title("Pareto front")
    figure.savefig(path, format="png")
    return path


def log_front(study, sweep_run, names: Sequence[str]) -> None:
    """Draw the completed trials' front and upload it to the parent run as ``plots/pareto_front.png``."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    points = [list(t.values) for t in complete]
    on_front = {t.number for t in study.best_trials}
    front = [i for i, t in enumerate(complete) if t.number in on_front]
    with tempfile.TemporaryDirectory(prefix="pareto-") as tmp:
        path = plot_front(points, front, names, Path(tmp) / "pareto_front.png")
        sweep_run.log_file(path, "plots")
