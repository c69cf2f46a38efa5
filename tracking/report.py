"""What the sweep report reads from and writes to MLflow: the parent run's trials with their validation
curves and provenance tags in, the HTML file and the importance metrics out. Knows nothing of Optuna."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from tracking import run_reads
from tracking.mlflow_requests import with_retries
from tracking.select import metric_curves, table_from_runs, trial_runs
from tracking.store import make_client

if TYPE_CHECKING:
    import pandas as pd

REPORT_ARTIFACT_DIR = "report"  # the parent run's artifact folder holding the HTML file


def sweep_trials(tracking_uri: str, parent_run_id: str, metric: str = "val_cost") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table of the parent's trial runs — summary metrics and params, see
    :func:`tracking.select.table_from_runs` — and the long-form history of ``metric`` of each of them)."""
    table, curves, _ = sweep_record(tracking_uri, parent_run_id, metric)
    return table, curves


def sweep_record(
    tracking_uri: str, parent_run_id: str, metric: str = "val_cost"
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """What the report reads from MLflow, with one client in few requests: the runs table and curves of
    :func:`sweep_trials` and the parent run's tags (package versions, git commit, dataset); read straight from
    an embedded store where :mod:`tracking.run_reads` can, without loading MLflow."""
    client = make_client(tracking_uri, lazy=True)
    parent = run_reads.get_run(client, parent_run_id) or with_retries(
        client.get_run, parent_run_id, what=f"get run {parent_run_id}"
    )
    table = table_from_runs(trial_runs(client, [parent.info.experiment_id], parent_run_id))
    numbers = dict(zip(table["run_id"], table["trial_number"], strict=True))
    return table, metric_curves(client, list(table["run_id"]), metric, numbers), dict(parent.data.tags)


def reads_directly(tracking_uri: str, parent_run_id: str) -> bool:
    """Whether :func:`sweep_record` of ``parent_run_id`` reads straight from the store, MLflow never loaded:
    an embedded store that :mod:`tracking.run_reads` reads (one read of the parent run, a millisecond)."""
    return run_reads.get_run(make_client(tracking_uri, lazy=True), parent_run_id) is not None


def run_tags(tracking_uri: str, run_id: str) -> dict[str, str]:
    """The tags of run ``run_id`` (the parent's hold the package versions, git commit and dataset)."""
    client = make_client(tracking_uri)
    return dict(with_retries(client.get_run, run_id, what=f"get run {run_id}").data.tags)


def log_report(tracking_uri: str, run_id: str, html: Path, metrics: dict[str, float]) -> str:
    """Log ``html`` under ``report/`` of run ``run_id`` and ``metrics`` on it; returns the artifact's path.

    A finished parent run takes them too (MLflow refuses only deleted runs), so the report may be redrawn at
    any time; a metric logged again keeps its history, the newest value last. Written and copied directly to an
    embedded store (:mod:`tracking.run_writes`, :mod:`tracking.run_reads`), without loading MLflow."""
    from tracking import run_writes

    client = make_client(tracking_uri, lazy=True)
    now = int(time.time() * 1000)
    run_writes.log_values(
        client, run_id, metrics=[(key, float(value), now, 0) for key, value in sorted(metrics.items())]
    )
    if not run_reads.log_artifact(client, run_id, html, REPORT_ARTIFACT_DIR):
        with_retries(client.log_artifact, run_id, str(html), REPORT_ARTIFACT_DIR, what="upload the sweep report")
    return f"{REPORT_ARTIFACT_DIR}/{Path(html).name}"
