"""Figures of ``sweeps batch-size --advise`` / ``--measure-steps``, drawn headless with matplotlib's Agg canvas.

* :func:`plot_pareto` — the paper's Pareto curve: steps S against samples E = S·B to reach the target, one
  point per measured size, the fitted S = S_min·(1 + B_crit/B) and the pilot's prediction (B_crit = B_noise)
  as curves, with B_noise and B_crit marked where they sit on them (there S = 2·S_min and E = 2·E_min).
* :func:`plot_prediction` — predicted beside measured, per size: seconds and steps to the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tracking.plots import save_png


def _figure(ncols: int = 1, width: float = 7.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, ncols)


def _plain_log_ticks(ax, *axes: str) -> None:
    """Ticks of a log axis as plain numbers (40, 60, 100), not 4×10¹: steps and seconds read at a glance.
    Minor ticks at 2× and 5× a power of ten are labelled too on an axis spanning less than 1.5 decades, where
    the major ticks alone would leave one label or none."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    def plain(value: float, _) -> str:
        return f"{value:,.0f}" if value >= 1 else f"{value:g}"

    def some(value: float, _) -> str:
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
        return plain(value, _) if mantissa in (2, 5) else ""

    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        low, high = ax.get_xlim() if name == "x" else ax.get_ylim()
        axis.set_major_formatter(FuncFormatter(plain))
        axis.set_minor_formatter(FuncFormatter(some) if high < 30 * low else NullFormatter())


def _curve(s_min: float, b_crit: float, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps = s_min * (1.0 + b_crit / sizes)
    return steps * sizes, steps


def plot_pareto(
    measured: Sequence[tuple[int, float, float]],
    path: Path,
    *,
    b_noise: float,
    s_min_pilot: float,
    fit: tuple[float, float] | None = None,
    target: float | None = None,
) -> Path:
    """Steps against samples, log–log. ``measured`` holds ``(batch size, steps, samples)`` of each size's
    best run; ``fit`` is ``(S_min, B_crit)``; the pilot's curve is S_min_pilot·(1 + B_noise/B)."""
    figure, ax = _figure()
    sizes = [m[0] for m in measured]
    low = min([*sizes, b_noise, fit[1] if fit else b_noise]) / 4
    high = max([*sizes, b_noise, fit[1] if fit else b_noise]) * 4
    grid = np.geomspace(max(low, 0.5), high, 200)
    if fit is not None:
        s_min, b_crit = fit
        ax.plot(*_curve(s_min, b_crit, grid), color="tab:red", linewidth=1.6, label=f"fit: B_crit = {b_crit:.3g}")
        ax.axhline(s_min, color="tab:red", linestyle=":", linewidth=0.9, label=f"S_min = {s_min:.3g} steps")
        ax.axvline(s_min * b_crit, color="tab:red", linestyle="-.", linewidth=0.9, label="E_min = S_min·B_crit")
        ax.plot([2 * s_min * b_crit], [2 * s_min], "D", color="tab:red", markersize=8, label="B = B_crit")
    ax.plot(
        *_curve(s_min_pilot, b_noise, grid),
        color="tab:green",
        linestyle="--",
        linewidth=1.4,
        label=f"predicted from the pilot: B_noise = {b_noise:.3g}",
    )
    ax.plot([2 * s_min_pilot * b_noise], [2 * s_min_pilot], "*", color="tab:green", markersize=14, label="B = B_noise")
    if measured:
        ax.plot([m[2] for m in measured], [m[1] for m in measured], "o", color="tab:blue", label="measured (best lr)")
        for b, steps, samples in measured:
            ax.annotate(str(b), (samples, steps), textcoords="offset points", xytext=(5, 4), fontsize="small")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax, "x", "y")
    goal = f" to validation cost ≤ {target:g}" if target is not None else ""
    ax.set(xlabel="samples E = steps × batch size", ylabel="optimisation steps S", title=f"Steps against samples{goal}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_png(figure, path)


def plot_prediction(
    sizes: Sequence[int],
    predicted_seconds: Sequence[float | None],
    measured_seconds: Sequence[float | None],
    predicted_steps: Sequence[float | None],
    measured_steps: Sequence[float | None],
    path: Path,
    recommended: int | None = None,
) -> Path:
    """Two panels against batch size: seconds and steps to the target, predicted (line) and measured (dots,
    each size at its best learning rate; a size that never reached the target has no dot)."""
    figure, (left, right) = _figure(2, 11)

    def values(seq):
        return np.array([math.nan if v is None else float(v) for v in seq])

    for ax, pred, meas, label in (
        (left, predicted_seconds, measured_seconds, "training seconds"),
        (right, predicted_steps, measured_steps, "steps"),
    ):
        ax.plot(sizes, values(pred), "s--", color="tab:green", label="predicted")
        ax.plot(sizes, values(meas), "o", color="tab:blue", markersize=7, label="measured")
        if recommended is not None:
            ax.axvline(recommended, color="tab:green", alpha=0.4, linewidth=6, label=f"recommended: {recommended}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(sizes), [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_yscale("log")
        _plain_log_ticks(ax, "y")
        ax.set(xlabel="batch size", ylabel=label, title=f"{label.capitalize()} to the target")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return save_png(figure, path)
