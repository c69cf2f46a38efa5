"""tracking.plots: the summary's figures, drawn on fixed margins and a fixed title place."""

from __future__ import annotations

import pandas as pd
import pytest

from tracking import plots


def _automatic_figure():
    """A figure as matplotlib lays out its title by itself (placed at each draw above the tick labels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100)
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.11, top=0.92)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = [f"run{i}" for i in range(6)]
    table = pd.DataFrame(
        {
            "run_id": runs,
            "trial_number": range(6),
            "state": ["complete", "pruned", "complete", "fail", "complete", "complete"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "FAILED", "FINISHED", "FINISHED"],
            "final_val_cost": [0.9, 0.7, 0.3, float("nan"), 0.05, 0.4],
            "batch_size": ["64", "128", "256", "512", "128", "64"],
        }
    )
    curves = pd.DataFrame(
        [(run, i, step, (1.0 + i) / step) for i, run in enumerate(runs) for step in range(1, 11)],
        columns=["run_id", "trial_number", "step", "value"],
    )
    return table, curves


@pytest.mark.parametrize("offset", [False, True], ids=["plain", "offset-text"])
@pytest.mark.parametrize("figure", ["val_cost_curves", "optimization_history", "batch_size_vs_cost"])
def test_the_title_is_where_matplotlib_would_place_it(tmp_path, monkeypatch, figure, offset):
    table, curves = _sweep()
    if offset:  # values that make matplotlib write an offset ("+1.43e1") above the y axis, which it keeps clear
        table["final_val_cost"] = 14.3 + table["final_val_cost"] * 1e-4
        curves["value"] = 14.3 + curves["value"] * 1e-4
    draw = {
        "val_cost_curves": lambda path: plots.plot_val_cost_curves(curves, table, "run4", path),
        "optimization_history": lambda path: plots.plot_optimization_history(table, "final_val_cost", "minimize", path),
        "batch_size_vs_cost": lambda path: plots.plot_batch_size_vs_cost(table, "final_val_cost", "run4", path),
    }[figure]
    fixed = draw(tmp_path / "fixed.png").read_bytes()
    monkeypatch.setattr(plots, "new_figure", _automatic_figure)
    assert draw(tmp_path / "automatic.png").read_bytes() == fixed


def test_a_saved_png_holds_the_pixels_of_matplotlibs_default_one(tmp_path):
    import numpy as np
    from PIL import Image

    table, curves = _sweep()
    fast = plots.plot_val_cost_curves(curves, table, "run4", tmp_path / "fast.png")
    figure, ax = plots.new_figure()
    ax.plot(curves["step"], curves["value"])
    plots.save_png(figure, tmp_path / "a.png")
    figure.savefig(tmp_path / "b.png", format="png")  # zlib's default level
    for path in (fast, tmp_path / "a.png"):
        assert Image.open(path).format == "PNG"
    a, b = (np.asarray(Image.open(tmp_path / name)) for name in ("a.png", "b.png"))
    assert a.shape == (450, 700, 4) and (a == b).all()
