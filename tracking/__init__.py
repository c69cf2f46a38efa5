"""Every trial's cost curves in MLflow, nested under its sweep, and pandas selection over them.

Layout: experiment = the sweep's name; one parent run per study; one child run per trial (``trial-0007``)
with per-epoch curves (``step = epoch``), per-iteration mini-batch costs (``step = iteration``), summary
metrics, params, provenance tags and the data as MLflow dataset inputs. Knows MLflow, pandas and
matplotlib, never Optuna; they are imported only when first used, so importing this package is cheap.

    splits = {"training": (X_train, Y_train), "validation": (X_val, Y_val)}
    inputs = describe_dataset("digits", fingerprint, {"name": "digits"}, splits)
    sweep = start_sweep(
        "adam-betas", tracking_uri=default_tracking_uri(workdir), tags={"dataset": "digits"}, inputs=inputs
    )
    run = sweep.trial(7, {"batch_size": 64, "lr": 1e-3}, seed=1234)
    run.log_epoch(record, minibatch_costs, minibatch_ewa)  # from the epoch callback
    run.finish("complete", history)
    sweep.update_summary(spec); sweep.finish()
    best_run("adam-betas", tracking_uri=...)
"""

import os

# Before anything imports MLflow: there is no internet here, and MLflow would try to send telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow prints two "View run at <URL>" lines to stdout per finished run against a server (and fetches the
# run again to do it): noise in a sweep of hundreds of trials.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from tracking.cache import cache_dir
from tracking.datasets import DatasetRecord, describe_dataset, log_dataset_inputs
from tracking.errors import NoFinishedTrial, TrackingError, TrackingUnavailable
from tracking.provenance import begin_git_state, git_commit, git_state, package_versions, provenance_tags
from tracking.redact import redact, redact_obj
from tracking.runs import (
    SweepRun,
    download_artifact,
    fail_trial_run,
    find_trial_run,
    get_or_create_experiment,
    metric_values,
    read_run,
    start_sweep,
    sweep_runs,
)
from tracking.schema import Outcome
from tracking.select import best_run, curves, runs_table
from tracking.store import (
    check_reachable,
    check_separate_databases,
    default_artifact_location,
    default_tracking_uri,
    make_client,
    written_directly,
)
from tracking.summary import update_sweep_summary
from tracking.trial import TrialRun
from tracking.writer.client import start_writer

__all__ = [
    "DatasetRecord",
    "NoFinishedTrial",
    "Outcome",
    "SweepRun",
    "TrackingError",
    "TrackingUnavailable",
    "TrialRun",
    "begin_git_state",
    "best_run",
    "cache_dir",
    "check_reachable",
    "check_separate_databases",
    "curves",
    "default_artifact_location",
    "default_tracking_uri",
    "describe_dataset",
    "download_artifact",
    "fail_trial_run",
    "find_trial_run",
    "get_or_create_experiment",
    "git_commit",
    "git_state",
    "log_dataset_inputs",
    "make_client",
    "metric_values",
    "package_versions",
    "provenance_tags",
    "read_run",
    "redact",
    "redact_obj",
    "runs_table",
    "start_sweep",
    "start_writer",
    "sweep_runs",
    "update_sweep_summary",
    "written_directly",
]
