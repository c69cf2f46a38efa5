"""The run layout's names: tags, metric names and trial states, written once so writers and readers agree.

Layout: one MLflow experiment per sweep, one parent run per study (tag ``role = sweep``), one child run per
trial (tag ``role = trial``, ``mlflow.parentRunId`` = the parent's id, run name ``trial-0007``).
"""

from __future__ import annotations

import enum

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
RUN_NAME = "mlflow.runName"  # a caller's own run name for a trial's run (bs-0128-seed-1), instead of trial-0007
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

RUNNING = "running"


class Outcome(enum.Enum):
    """How a trial ended: its ``trial_state`` tag (the value) and its MLflow run status (``status``).

    The one list of outcomes both packages use; :meth:`parse` also takes the names callers wrote before
    (``completed``, ``failed``) and Optuna's state names, in any case."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"

    @property
    def status(self) -> str:
        """The MLflow run status of a trial that ended so."""
        return _STATUS[self]

    @classmethod
    def parse(cls, value: Outcome | str) -> Outcome:
        """The outcome named ``value``; ValueError for anything else."""
        if isinstance(value, cls):
            return value
        key = value.strip().lower() if isinstance(value, str) else value
        if key not in _SPELLINGS:
            raise ValueError(f"unknown trial state {value!r}; valid trial states: {', '.join(sorted(_SPELLINGS))}")
        return _SPELLINGS[key]


_STATUS = {Outcome.COMPLETE: "FINISHED", Outcome.PRUNED: "KILLED", Outcome.FAIL: "FAILED"}
_SPELLINGS = {
    **{o.value: o for o in Outcome},
    "completed": Outcome.COMPLETE,
    "failed": Outcome.FAIL,
}


def trial_status(state: Outcome | str) -> tuple[str, str]:
    """``(trial_state tag, MLflow status)`` of a finished trial; raises ValueError for other states."""
    outcome = Outcome.parse(state)
    return outcome.value, outcome.status


def trial_run_name(number: int) -> str:
    """``trial-0007``: zero-padded so the UI sorts runs by trial number."""
    return f"trial-{number:04d}"
