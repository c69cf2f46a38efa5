"""The figures of the sweep report, as plotly figures: Optuna's own visualisations where they fit (history,
parallel coordinates, slices, contours), drawn here where Optuna has none (importances with intervals,
validation curves grouped by schedule).

Each entry of :data:`FIGURES` turns a :class:`ReportData` into zero or more :class:`Figure`; an entry that
does not apply (a contour over a pair not both searched) gives none.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweeps.results.importance import ImportanceTable

BEST_COLOUR = "#d62728"
OTHER_COLOUR = "rgba(90, 90, 90, 0.45)"
# Pairs drawn as contours when the sweep searched both parameters.
CONTOURS = (("batch_size", "lr"), ("beta1", "beta2"))


@dataclass
class ReportData:
    """What the figures are drawn from. ``curves`` is long-form (``trial_number, step, value``) validation
    cost per epoch; ``settings`` maps a trial number to its full setting (fixed values included)."""

    study: Any
    objective: str
    best_number: int | None
    curves: Any  # pandas.DataFrame
    settings: dict[int, dict[str, Any]]
    # None until computed: a figure that shows them must be in SHOW_IMPORTANCES (drawn after they are known),
    # else it fails here rather than draw nothing
    importances: list[ImportanceTable] | None = None

    @property
    def searched(self) -> set[str]:
        return {name for t in self.study.get_trials(deepcopy=False) for name in t.params}

    def optuna_target(self) -> dict[str, Any]:
        """Keyword arguments of Optuna's plots: the first objective, named (several objectives need a target)."""
        if len(self.study.directions) > 1:
            return {"target": lambda t: t.values[0], "target_name": self.objective}
        return {"target_name": self.objective}


@dataclass
class Figure:
    key: str  # stable id in the HTML (data-figure), e.g. "contour-batch_size-lr"
    title: str
    figure: Any  # plotly.graph_objects.Figure
    caption: str = ""


def _quiet(plot: Callable, *args, **kwargs):
    """Call one of Optuna's plots without its experimental and small-study warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plot(*args, **kwargs)


def history(data: ReportData) -> list[Figure]:
    from optuna.visualization import plot_optimization_history

    fig = _quiet(plot_optimization_history, data.study, **data.optuna_target())
    return [Figure("history", "Optimisation history", fig, "Each completed trial's objective and the best so far.")]


def parallel(data: ReportData) -> list[Figure]:
    from optuna.visualization import plot_parallel_coordinate

    fig = _quiet(plot_parallel_coordinate, data.study, **data.optuna_target())
    return [Figure("parallel", "Parallel coordinates", fig, "One line per completed trial, coloured by objective.")]


def importance_bars(data: ReportData) -> list[Figure]:
    """One chart per target: each evaluator's importances as bars with their bootstrap interval."""
    import plotly.graph_objects as go

    figures = []
    for target in dict.fromkeys(t.target for t in data.importances):
        fig = go.Figure()
        for table in (t for t in data.importances if t.target == target):
            rows = list(reversed(table.rows))  # plotly draws the first bar at the bottom
            fig.add_bar(
                name=table.label,
                orientation="h",
                y=[r.param for r in rows],
                x=[r.value for r in rows],
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [r.high - r.value for r in rows],
                    "arrayminus": [r.value - r.low for r in rows],
                },
                marker={"opacity": [0.35 if r.within_noise else 1.0 for r in rows]},  # within noise: faded
                customdata=[[r.low, r.high, "within noise" if r.within_noise else ""] for r in rows],
                hovertemplate="%{y}: %{x:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}] %{customdata[2]}",
            )
        fig.update_layout(barmode="group", xaxis_title="importance (normalised)", height=140 + 60 * len(rows))
        n = next(t.n_trials for t in data.importances if t.target == target)
        caption = (
            f"Bars: importance on all {n} completed trials; whiskers: 95% bootstrap interval (resampled trials); "
            "faded: within noise."
        )
        figures.append(Figure(f"importance-{target}", f"Importances for {target}", fig, caption))
    return figures


def slices(data: ReportData) -> list[Figure]:
    from optuna.visualization import plot_slice

    fig = _quiet(plot_slice, data.study, **data.optuna_target())
    fig.update_layout(width=None)  # Optuna gives 300 px per parameter: fit the page instead
    return [Figure("slice", "Slice plots", fig, "The objective against each parameter, one point per trial.")]


def contours(data: ReportData) -> list[Figure]:
    from optuna.visualization import plot_contour

    out = []
    for a, b in CONTOURS:
        if {a, b} <= data.searched:
            fig = _quiet(plot_contour, data.study, params=[a, b], **data.optuna_target())
            out.append(Figure(f"contour-{a}-{b}", f"Contour of ({a}, {b})", fig, "Only trials that sampled both."))
    return out


def validation_curves(data: ReportData) -> list[Figure]:
    """Every trial's validation cost per epoch, one panel per schedule, the best trial in red."""
    from plotly.subplots import make_subplots

    if data.curves is None or data.curves.empty:
        return []
    schedule_of = {n: str(s.get("schedule", "—")) for n, s in data.settings.items()}
    schedules = sorted({schedule_of.get(int(n), "—") for n in data.curves["trial_number"].unique()})
    cols = min(2, len(schedules))
    rows = math.ceil(len(schedules) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=schedules, shared_yaxes=True)
    for number, curve in data.curves.groupby("trial_number", sort=True):
        schedule = schedule_of.get(int(number), "—")
        i = schedules.index(schedule)
        best = int(number) == data.best_number
        fig.add_scatter(
            x=curve["step"],
            y=curve["value"],
            mode="lines",
            name=f"trial {number}" + (" (best)" if best else ""),
            line={"color": BEST_COLOUR if best else OTHER_COLOUR, "width": 3 if best else 1},
            showlegend=best,
            row=i // cols + 1,
            col=i % cols + 1,
        )
    fig.update_layout(height=280 * rows, hovermode="closest")
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="val_cost", col=1)
    return [
        Figure(
            "curves",
            "Validation curves by schedule",
            fig,
            "Every trial (pruned and failed ones up to where they stopped); the best trial in red.",
        )
    ]


# key -> builder, in the order the report shows them
FIGURES: dict[str, Callable[[ReportData], list[Figure]]] = {
    "history": history,
    "parallel": parallel,
    "importance": importance_bars,
    "slice": slices,
    "contour": contours,
    "curves": validation_curves,
}


# The entries of FIGURES that show the importances: the others can be drawn before these are known.
SHOW_IMPORTANCES = ("importance",)


def _any_complete(data: ReportData) -> bool:
    return any(t.state.name == "COMPLETE" for t in data.study.get_trials(deepcopy=False))


def figures_ahead(data: ReportData) -> dict[str, list[Figure]]:
    """The figures of :func:`build_figures` that do not show the importances, by entry of FIGURES: drawn
    while the importances are computed elsewhere (:func:`sweeps.results.html_report.compose`)."""
    if not _any_complete(data):
        return {}
    return {key: build(data) for key, build in FIGURES.items() if key not in SHOW_IMPORTANCES}


def build_figures(data: ReportData, ahead: dict[str, list[Figure]] | None = None) -> list[Figure]:
    """Every figure that applies to ``data`` (none when no trial completed: Optuna's plots need one), taking
    those of ``ahead`` (:func:`figures_ahead`) as drawn."""
    if not _any_complete(data):
        return validation_curves(data)
    ahead = ahead or {}
    return [figure for key, build in FIGURES.items() for figure in (ahead[key] if key in ahead else build(data))]
