"""The run layout's names: tags, metric names and trial states, written once so writers and readers agree.

Layout: one MLflow experiment per sweep, one parent run per study (tag ``role = sweep``), one child run per
trial (tag ``role = trial``, ``mlflow.parentRunId`` = the parent's id, run name ``trial-0007``).
"""

from __future__ import annotations

# Tags every run of the layout carries; readers select on them.
ROLE = "role"
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
ROLE_CONFIRM = "confirm"  # a retraining by `sweeps confirm`: nested like a trial, not one of the sweep's trials
STUDY_NAME = "study_name"
TRIAL_NUMBER = "trial_number"
TRIAL_STATE = "trial_state"
PRUNED_AT_EPOCH = "pruned_at_epoch"
FAIL_REASON = "fail_reason"
SEED = "seed"
TRACKING_URI = "tracking_uri"
# MLflow's own system tags: the UI nests children by the first and shows the second as the source version.
PARENT_RUN_ID = "mlflow.parentRunId"
GIT_COMMIT_SYSTEM = "mlflow.source.git.commit"

# Per-iteration curves (``step = iteration``, numbered continuously from 1 across epochs).
MINIBATCH_COST = "minibatch_cost"
MINIBATCH_COST_EWA = "minibatch_cost_ewa"
# History.summary() keys, logged once per trial at step 0; runs_table() shows them as columns.
SUMMARY_METRICS = (
    "final_val_cost",
    "best_val_cost",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "final_train_cost",
)
# Prefix of the parent run's copy of its best trial: metrics ``best.<metric>``, tags ``best.<param>``.
BEST_PREFIX = "best."

# Trial state (as the caller names it, Optuna's spellings included) -> (trial_state tag, MLflow run status).
_STATES = {
    "complete": ("complete", "FINISHED"),
    "completed": ("complete", "FINISHED"),
    "pruned": ("pruned", "KILLED"),
    "fail": ("fail", "FAILED"),
    "failed": ("fail", "FAILED"),
}
RUNNING = "running"


def trial_status(state: str) -> tuple[str, str]:
    """``(trial_state tag, MLflow status)`` of a finished trial; raises ValueError for other states."""
    key = state.strip().lower() if isinstance(state, str) else state
    if key not in _STATES:
        raise ValueError(f"unknown trial state {state!r}; valid trial states: {', '.join(sorted(_STATES))}")
    return _STATES[key]


def trial_run_name(number: int) -> str:
    """``trial-0007``: zero-padded so the UI sorts runs by trial number."""
    return f"trial-{number:04d}"
