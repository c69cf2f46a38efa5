"""Figures of a batch-size comparison, drawn headless with matplotlib's Agg canvas (no pyplot, no Optuna).

Each function takes plain per-size data (batch size → one sequence per repeat) and writes one PNG, so the
caller needs no DataFrame and the figures can be drawn before or without MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tracking.plots import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Per-size series: batch size -> one sequence of values per repeat.
Series = Mapping[int, Sequence[Sequence[float]]]


def _color(i: int) -> str:
    return f"C{i % 10}"


def _finish(figure: Figure, ax: Axes, path: Path, **labels: str) -> Path:
    ax.set(**labels)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return save_png(figure, path)


def _log2_sizes(ax: Axes, sizes: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sizes), [str(s) for s in sizes])
    ax.minorticks_off()


def plot_cost_curves(val_costs: Series, path: Path, chosen: int | None = None) -> Path:
    """Mean ± one standard deviation of validation cost against epoch, one band per batch size.

    Runs of a size can differ in length (an equal-time budget); each epoch averages the repeats that
    reached it. The chosen size is drawn thicker.
    """
    figure, ax = new_figure()
    for i, (size, runs) in enumerate(sorted(val_costs.items())):
        length = max((len(r) for r in runs), default=0)
        if length == 0:
            continue
        grid = np.full((len(runs), length), np.nan)
        for j, r in enumerate(runs):
            grid[j, : len(r)] = r
        grid[~np.isfinite(grid)] = np.nan
        counts = np.sum(~np.isnan(grid), axis=0)
        keep = counts > 0  # epochs no finite repeat reached (a diverged run) are left out
        epochs, grid, counts = np.arange(1, length + 1)[keep], grid[:, keep], counts[keep]
        mean = np.nanmean(grid, axis=0)
        spread = np.nansum((grid - mean) ** 2, axis=0)
        std = np.sqrt(np.divide(spread, counts - 1, out=np.zeros_like(spread), where=counts > 1))
        ax.plot(epochs, mean, color=_color(i), linewidth=2.5 if size == chosen else 1.4, label=f"{size}")
        ax.fill_between(epochs, mean - std, mean + std, color=_color(i), alpha=0.18, linewidth=0)
    if _positive_span(val_costs):
        ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers, even over a short run
    return _finish(figure, ax, path, xlabel="epoch", ylabel="validation cost", title="Validation cost (mean ± std)")


def plot_throughput(throughput: Series, overall: Mapping[int, float], path: Path) -> Path:
    """Training samples per second against batch size: each repeat as a dot, and a line through ``overall``
    (one figure per size: all its samples over all its seconds, as in the report's table)."""
    figure, ax = new_figure()
    sizes = sorted(throughput)
    for s in sizes:
        ax.scatter([s] * len(throughput[s]), throughput[s], color="tab:blue", alpha=0.5, s=18)
    ax.plot(sizes, [overall[s] for s in sizes], "o-", color="tab:blue", label="all runs pooled")
    if sizes and min(sizes) > 0:
        _log2_sizes(ax, sizes)
    return _finish(figure, ax, path, xlabel="batch size", ylabel="samples / second", title="Throughput")


def plot_cost_vs_seconds(val_costs: Series, epoch_seconds: Series, path: Path) -> Path:
    """Each run's validation cost against its cumulative training seconds, coloured by batch size.

    Shows which size gets lowest soonest; the end of each line is the cost reached when the budget ran out.
    """
    figure, ax = new_figure()
    for i, size in enumerate(sorted(val_costs)):
        for j, (costs, seconds) in enumerate(zip(val_costs[size], epoch_seconds[size], strict=True)):
            n = min(len(costs), len(seconds))
            if n == 0:
                continue
            x, y = np.cumsum(seconds[:n]), np.asarray(costs[:n], dtype=float)
            ax.plot(x, y, color=_color(i), alpha=0.7, linewidth=1.2, label=f"{size}" if j == 0 else None)
            ax.plot(x[-1:], y[-1:], "o", color=_color(i), markersize=4)
    if _positive_span(val_costs):
        ax.set_yscale("log")
    return _finish(
        figure, ax, path, xlabel="training seconds", ylabel="validation cost", title="Cost reached against time"
    )


def plot_final_cost(
    sizes: Sequence[int], means: Sequence[float], lows: Sequence[float], highs: Sequence[float], path: Path
) -> Path:
    """Mean final validation cost against batch size with its 95% interval as error bars."""
    figure, ax = new_figure()
    mean = np.asarray(means, dtype=float)
    low = np.nan_to_num(mean - np.asarray(lows, dtype=float))
    high = np.nan_to_num(np.asarray(highs, dtype=float) - mean)
    ax.errorbar(list(sizes), mean, yerr=[low, high], fmt="o-", capsize=4, color="tab:red")
    if len(sizes) and min(sizes) > 0:
        _log2_sizes(ax, sizes)
    return _finish(
        figure, ax, path, xlabel="batch size", ylabel="final validation cost", title="Final cost (mean, 95% interval)"
    )


def plot_paired_differences(
    final_costs: Mapping[int, Sequence[float]], chosen: int, tied: Sequence[int], path: Path
) -> Path:
    """Each size's final cost minus the chosen size's, seed by seed: one thin line per seed across the sizes,
    and their mean as a thick one, against a zero line.

    ``final_costs[size][r]`` is repeat r's final cost (seed r for every size; NaN for a diverged run). This is
    what the paired test looks at: a seed's luck moves every size alike and cancels here, so sizes whose own
    intervals overlap can still be told apart when every seed's line stays on one side of zero. Sizes tied
    with the chosen one are drawn as hollow markers.
    """
    figure, ax = new_figure()
    sizes = sorted(final_costs)
    base = np.asarray(final_costs[chosen], dtype=float)
    diffs = np.array([np.asarray(final_costs[s], dtype=float) - base for s in sizes])  # (sizes, seeds)
    for r in range(diffs.shape[1]):
        ax.plot(sizes, diffs[:, r], color="tab:gray", alpha=0.6, linewidth=1, label="one seed" if r == 0 else None)
    finite = np.isfinite(diffs)
    count = finite.sum(axis=1)
    total = np.where(finite, diffs, 0.0).sum(axis=1)
    mean = np.divide(total, count, out=np.full(len(sizes), np.nan), where=count > 0)  # over the finished seeds
    ax.plot(sizes, mean, color="tab:red", linewidth=2, label="mean over seeds")
    for s, m in zip(sizes, mean, strict=True):
        hollow = s in tied and s != chosen
        ax.plot([s], [m], "o", color="tab:red", markerfacecolor="white" if hollow else "tab:red", markersize=7)
    ax.axhline(0.0, color="black", linewidth=0.8)
    if sizes and min(sizes) > 0:
        _log2_sizes(ax, sizes)
    return _finish(
        figure,
        ax,
        path,
        xlabel="batch size",
        ylabel=f"final cost − batch size {chosen}'s",
        title=f"Paired differences from {chosen} (hollow: tied with it)",
    )


def plot_lr_search(
    trials: Mapping[int, Sequence[tuple[float, float]]], chosen: Mapping[int, float], path: Path
) -> Path:
    """Final validation cost against learning rate, one line per batch size through its search trials
    (``trials[size]`` holds ``(lr, cost)`` pairs; NaN for a diverged trial, left out), each size's chosen rate
    ringed. Shows whether larger batches want larger rates, and whether a search stopped at its range's edge."""
    figure, ax = new_figure()
    for i, size in enumerate(sorted(trials)):
        points = sorted((lr, cost) for lr, cost in trials[size] if np.isfinite(cost))
        if not points:
            continue
        lrs, costs = zip(*points, strict=True)
        ax.plot(lrs, costs, "o-", color=_color(i), markersize=4, linewidth=1.2, label=f"{size}")
        best = min(points, key=lambda p: abs(np.log(p[0] / chosen[size]))) if size in chosen else None
        if best is not None:
            ax.plot([best[0]], [best[1]], "o", color=_color(i), markersize=11, markerfacecolor="none")
    ax.set_xscale("log")
    if _positive_span({s: [[c for _, c in t]] for s, t in trials.items()}):
        ax.set_yscale("log")
    return _finish(
        figure,
        ax,
        path,
        xlabel="learning rate",
        ylabel="final validation cost (search seed)",
        title="Learning-rate search per batch size (ringed: chosen)",
    )


def _positive_span(series: Series) -> bool:
    """Whether every finite value is positive and they span more than a decade (then a log axis reads best)."""
    values = np.asarray([v for runs in series.values() for r in runs for v in r], dtype=float)
    values = values[np.isfinite(values)]
    return bool(values.size) and values.min() > 0 and values.max() > 10 * values.min()
