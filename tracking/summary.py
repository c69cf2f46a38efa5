"""The parent run's summary of its sweep: resolved spec, trials table, plots and a copy of the best trial.

The best trial is copied as tags ``best.<param>`` (plus ``best.trial_number`` and ``best.run_id``) and as
metrics ``best.<metric>``. Not as params: MLflow params cannot change, and the best changes while a sweep
runs. Tags are overwritten on each update (stale ``best.*`` tags are deleted); each metric gains one point
per update at ``step`` = the number of trials then, so its history shows how the best improved.
Artifacts (``spec.yaml``, ``trials.csv``, ``plots/*.png``) are overwritten on each update.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracking import plots, run_reads, run_writes, schema
from tracking.errors import NoFinishedTrial, TrackingError
from tracking.forked import Forked
from tracking.mlflow_requests import tag_value, with_retries
from tracking.redact import redact_obj
from tracking.select import DIRECTIONS, metric_curves, pick_best, table_from_runs, trial_runs

if TYPE_CHECKING:
    import pandas as pd

    from tracking.runs import SweepRun

SPEC_FILE = "spec.yaml"
TABLE_FILE = "trials.csv"
PLOTS_DIR = "plots"


def write_spec(spec: Mapping[str, Any], path: Path) -> Path:
    """The resolved spec as YAML, every string redacted, keys in the spec's order."""
    import yaml

    path.write_text(yaml.safe_dump(redact_obj(dict(spec)), sort_keys=False, allow_unicode=True))
    return path


def _best_entities(
    table: pd.DataFrame, params: dict[str, dict[str, str]], metric: str, direction: str, own: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, float]]:
    """``best.*`` tags (the params as logged, not as typed by the table) and metrics of the best trial.

    Params the parent holds itself with the same value (``own``: the sweep's fixed settings) are not copied."""
    try:
        best = pick_best(table, metric, direction)
    except NoFinishedTrial:
        return {}, {}
    mine = {k: v for k, v in params[best["run_id"]].items() if own.get(k) != v}
    tags = {f"{schema.BEST_PREFIX}{k}": tag_value(v) for k, v in mine.items()}
    tags[f"{schema.BEST_PREFIX}trial_number"] = str(int(best["trial_number"]))
    tags[f"{schema.BEST_PREFIX}run_id"] = best["run_id"]
    metrics = {f"{schema.BEST_PREFIX}{m}": float(best[m]) for m in schema.SUMMARY_METRICS if not math.isnan(best[m])}
    return tags, metrics


def _draw(figure: tuple) -> None:
    """``figure``: a plotting function of :mod:`tracking.plots` and its arguments."""
    plot, *args = figure
    plot(*args)


def update_sweep_summary(
    sweep: SweepRun,
    spec: Mapping[str, Any] | None = None,
    metric: str = "final_val_cost",
    direction: str = "minimize",
    front: plots.ParetoFront | None = None,
    fork: bool | None = False,
) -> pd.DataFrame:
    """Rewrite the parent run's summary from the trial runs now in the store; returns the trials table.

    ``metric`` (one of ``schema.SUMMARY_METRICS``) and ``direction`` choose the best trial (FINISHED trials
    only; ties to the lowest trial number); TrackingError for another metric, ValueError for a bad direction.
    ``front`` (two objectives) adds ``plots/pareto_front.png`` (:func:`tracking.plots.plot_front`). Call it
    when the sweep ends (or whenever a fresher summary is wanted: it is safe to repeat).

    ``fork``: draw the figures other than the curves in forked copies of this process (``None``: where
    :func:`tracking.writer.launch.fork_is_safe` says a fork is safe), while this one reads the curves and
    draws them: ~60 ms of matplotlib a figure, so on an idle second core the summary takes half the time.
    Only worth it where nothing else waits for a core (the tracking writer at the end of a sweep, the
    trainer waiting), so not by default.
    """
    if metric not in schema.SUMMARY_METRICS:
        raise TrackingError(
            f"cannot rank trials by {metric!r}: it is not a summary metric of the trial runs; "
            f"choose one of {', '.join(schema.SUMMARY_METRICS)}"
        )
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    client = sweep.client
    runs = trial_runs(client, [sweep.experiment_id], sweep.run_id)
    table = table_from_runs(runs)
    params = {run.info.run_id: run.data.params for run in runs}
    parent = (
        run_reads.get_run(client, sweep.run_id) or with_retries(client.get_run, sweep.run_id, what="get the sweep run")
    ).data
    best_tags, best_metrics = _best_entities(table, params, metric, direction, parent.params)
    best_run_id = best_tags.get(f"{schema.BEST_PREFIX}run_id")
    with tempfile.TemporaryDirectory(prefix="sweep-summary-") as tmp:
        folder = Path(tmp)
        (folder / PLOTS_DIR).mkdir()
        if spec is not None:
            write_spec(spec, folder / SPEC_FILE)
        png = folder / PLOTS_DIR
        figures = [
            (plots.plot_optimization_history, table, metric, direction, png / "optimization_history.png"),
            (plots.plot_batch_size_vs_cost, table, metric, best_run_id, png / "batch_size_vs_cost.png"),
        ]
        if front is not None:
            figures.append((plots.plot_front, front, png / "pareto_front.png"))
        drawing = Forked(_draw, figures, fork=fork)  # not forked: drawn here, in this order, by results()
        try:
            table.to_csv(folder / TABLE_FILE, index=False)
            numbers = dict(zip(table["run_id"], table["trial_number"], strict=True)) if len(table) else {}
            val_curves = metric_curves(client, list(table["run_id"]), "val_cost", numbers)
            plots.plot_val_cost_curves(val_curves, table, best_run_id, png / "val_cost_curves.png")
            drawing.results()
        finally:
            drawing.close()  # the copies not waited for, if drawing here failed: before their folder goes
        if not run_reads.log_artifacts(client, sweep.run_id, folder):
            with_retries(client.log_artifacts, sweep.run_id, str(folder), what="upload the sweep summary")

    step = len(table)
    stamp = int(time.time() * 1000)
    counts = table["state"].value_counts()
    metrics = {**best_metrics, "n_trials": float(step)}
    metrics |= {f"n_{state}": float(counts.get(state, 0)) for state in ("complete", "pruned", "fail")}
    stale = sorted(k for k in parent.tags if k.startswith(schema.BEST_PREFIX) and k not in best_tags)
    run_writes.delete_tags(client, sweep.run_id, stale)
    run_writes.log_values(
        client,
        sweep.run_id,
        metrics=[(k, float(v), stamp, step) for k, v in metrics.items()],
        tags=list(best_tags.items()),
    )
    return table
