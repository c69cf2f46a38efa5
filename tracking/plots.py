"""The parent run's figures, drawn headless with matplotlib's Agg canvas (no pyplot, no global state).

Each function takes the sweep's runs table (see :func:`tracking.select.table_from_runs`) and writes one PNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BEST_COLOR = "tab:red"
OTHER_COLOR = "0.55"


def new_figure() -> tuple[Figure, Axes]:
    """A 7 x 4.5-inch figure on matplotlib's Agg canvas with one axes, its margins fixed and wide enough for
    these figures' labels (a seven-character tick and an axis title on the left, one line of ticks and a
    label below, a title above). Not matplotlib's constrained layout: that draws the figure once more to
    measure its text, 40 % of each figure's time, and every sweep ends by drawing three (bench/README.md,
    fifth round). Used by the sweep's summary, the batch-size figures and the Pareto front."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100)
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.11, top=0.92)
    FigureCanvasAgg(figure)
    # The title sits just above the axes, where matplotlib's automatic placement puts it over these axes
    # (their ticks are below) after measuring every tick label at each draw: ~7 % of a figure's time.
    with rc_context({"axes.titley": 1.0}):
        return figure, figure.add_subplot()


def save_png(figure: Figure, path: Path | BinaryIO) -> Path | BinaryIO:
    """``figure`` as a PNG at ``path`` (or into a binary file object), at zlib's fastest level: the same
    pixels, written ~12 ms sooner a figure (the summary's three: ~190 against ~225 ms) in files 3-15 % larger
    (30-50 KB each)."""
    figure.savefig(path, format="png", pil_kwargs={"compress_level": 1})
    return path


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _log_if_positive(ax: Axes, values: pd.Series) -> None:
    if len(values) and (values > 0).all() and values.max() > 10 * values.min():
        ax.set_yscale("log")


def plot_val_cost_curves(curves: pd.DataFrame, table: pd.DataFrame, best_run_id: str | None, path: Path) -> Path:
    """Every trial's ``val_cost`` against epoch, the best trial drawn on top in red.

    Pruned trials are dotted, failed ones dashed; the y range fits the trials that did not fail, so one
    diverging trial does not flatten the others. ``curves`` is long-form (``run_id, trial_number, step,
    value``) as :func:`tracking.select.curves` gives.
    """
    figure, ax = new_figure()
    finite = curves[curves["value"].map(math.isfinite)] if len(curves) else curves
    if finite.empty:
        _empty(ax, "no validation cost logged yet")
        return save_png(figure, path)
    states = dict(zip(table["run_id"], table["state"], strict=True))
    styles = {"pruned": ":", "fail": "--"}
    for run_id, points in finite.groupby("run_id", sort=False):
        if run_id != best_run_id:
            style = styles.get(states.get(run_id, ""), "-")
            ax.plot(points["step"], points["value"], style, color=OTHER_COLOR, alpha=0.5, linewidth=1)
    best = finite[finite["run_id"] == best_run_id]
    if not best.empty:
        number = int(best["trial_number"].iloc[0])
        ax.plot(best["step"], best["value"], color=BEST_COLOR, linewidth=2.5, label=f"best: trial {number}")
        ax.legend(loc="upper right")
    fitted = finite[finite["run_id"].map(states) != "fail"]
    _fit_y(ax, (fitted if len(fitted) else finite)["value"])
    ax.set(xlabel="epoch", ylabel="validation cost", title=f"Validation cost of {table['run_id'].nunique()} trials")
    ax.grid(alpha=0.3)
    return save_png(figure, path)


def _fit_y(ax: Axes, values: pd.Series) -> None:
    """Log scale when the values are positive and span more than a decade; limits fitted to ``values``."""
    low, high = float(values.min()), float(values.max())
    if low > 0 and high > 10 * low:
        ax.set_ylim(low / 1.25, high * 1.25)  # limits first: autoscaling over a diverged 1e308 overflows
        ax.set_yscale("log")
    else:
        pad = 0.05 * (high - low) or 0.05 * abs(high) or 1.0
        ax.set_ylim(low - pad, high + pad)


def plot_optimization_history(table: pd.DataFrame, metric: str, direction: str, path: Path) -> Path:
    """The objective of each finished trial against trial number, with the running best as a step line."""
    figure, ax = new_figure()
    done = table[(table["status"] == "FINISHED") & table[metric].map(math.isfinite)].sort_values("trial_number")
    if done.empty:
        _empty(ax, "no finished trial yet")
        return save_png(figure, path)
    running = done[metric].cummin() if direction == "minimize" else done[metric].cummax()
    ax.plot(done["trial_number"], done[metric], "o", color="tab:blue", alpha=0.7, label=metric)
    ax.step(done["trial_number"], running, where="post", color=BEST_COLOR, label="best so far")
    _log_if_positive(ax, done[metric])
    ax.set(xlabel="trial number", ylabel=metric, title=f"Optimization history ({direction})")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_png(figure, path)


def plot_batch_size_vs_cost(table: pd.DataFrame, metric: str, best_run_id: str | None, path: Path) -> Path:
    """``metric`` of each finished trial against its ``batch_size`` param (log-2 axis), best trial in red."""
    figure, ax = new_figure()
    done = table[(table["status"] == "FINISHED") & table[metric].map(math.isfinite)]
    if "batch_size" not in table.columns or done.empty:
        _empty(ax, "no finished trial with a batch_size param yet")
        return save_png(figure, path)
    sizes = done["batch_size"].astype(float)
    ax.scatter(sizes, done[metric], color="tab:blue", alpha=0.7)
    best = done[done["run_id"] == best_run_id]
    if not best.empty:
        ax.scatter(best["batch_size"].astype(float), best[metric], color=BEST_COLOR, s=90, label="best", zorder=3)
        ax.legend()
    if (sizes > 0).all():
        ax.set_xscale("log", base=2)
        ticks = sorted(sizes.unique())
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    _log_if_positive(ax, done[metric])
    ax.set(xlabel="batch size", ylabel=metric, title="Batch size against cost")
    ax.grid(alpha=0.3)
    return save_png(figure, path)


@dataclass(frozen=True)
class ParetoFront:
    """A two-objective sweep's completed trials: each one's two values (``points``), the indices of the
    Pareto set among them (``front``), and the objectives' names."""

    points: tuple[tuple[float, float], ...]
    front: tuple[int, ...]
    names: tuple[str, str]


def plot_front(pareto: ParetoFront, path: Path) -> Path:
    """Every completed trial as a dot, the Pareto set joined as a red staircase."""
    points, front, names = pareto.points, pareto.front, pareto.names
    figure, ax = new_figure()
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="0.55", s=18, label="trials")
        best = sorted((points[i] for i in front), key=lambda p: p[0])
        ax.step(
            [p[0] for p in best], [p[1] for p in best], where="post", color="tab:red", marker="o", label="Pareto set"
        )
        ax.legend()
    ax.set(xlabel=names[0], ylabel=names[1], title="Pareto front")
    return save_png(figure, path)
