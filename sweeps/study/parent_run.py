"""The sweep's MLflow side that is not a trial's own: the parent run (opened once, shared by every worker, its
summary rewritten) and the runs of trials Optuna failed (ended FAILED in MLflow too)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import tracking
from sweeps.results.pareto import front_of
from sweeps.spec import OBJECTIVES, Spec
from sweeps.study import interrupts
from sweeps.study.claims import STALE_REASON
from sweeps.study.run_inputs import dataset_inputs, setting_params
from sweeps.study.storage import Stores, TrialLock
from sweeps.study.trial_lifecycle import OUTCOME_ATTR, REASON_ATTR, RUN_ID_ATTR, setup_from_spec

PARENT_RUN_ATTR = "mlflow_parent_run_id"  # the study's user attribute holding the parent run's id


def update_parent_summary(sweep_run, spec: Spec, study=None) -> None:
    """Rewrite the parent run's best-trial copy, trials table and plots from the runs now in the store
    (and, for two objectives, the Pareto front of ``study``), after failing the runs :func:`fail_orphaned_runs`
    finds."""
    if study is not None:
        fail_orphaned_runs(sweep_run, study)  # before the summary reads the runs: it counts them
    sweep_run.update_summary(**summary_settings(spec, study), table=False)


def summary_settings(spec: Spec, study=None) -> dict:
    """The keyword arguments of ``SweepRun.update_summary`` (and ``summary_request``) for ``spec``'s sweep:
    with two objectives and ``study``, the Pareto front to plot too."""
    settings = {
        "spec": spec.resolved(),
        "metric": OBJECTIVES[spec.objectives[0]].metric,
        "direction": spec.directions[0],
    }
    if study is not None and len(spec.objectives) > 1:
        settings["front"] = front_of(study, list(spec.objectives))
    return settings


def fail_orphaned_runs(sweep_run, study) -> list[int]:
    """End FAILED the trial runs still RUNNING in MLflow whose Optuna trial has failed; return their numbers.

    A trial whose worker stopped beating is failed in Optuna first, then in MLflow (its trial may yet have
    finished, and a finished run must not be overwritten): a worker killed between the two leaves the run
    RUNNING for good. A live worker never does (it ends the run before telling Optuna), so such a run is an
    orphan. Looked for when a sweep starts and before its summary: the study's failed trials first (a
    database storage filters them in its query, not reading all of a large study), then, if there are any,
    one search of the MLflow store."""
    import optuna

    failed_trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
    if not failed_trials:
        return []
    running = sweep_run.running_trials()
    failed = []
    for number, run_id in sorted(running.items()):
        trial = failed_trials.get(number)
        if trial is not None:
            reason = trial.user_attrs.get(REASON_ATTR) or "its Optuna trial failed while the run was left running"
            tracking.fail_trial_run(sweep_run.tracking_uri, run_id, reason)
            failed.append(number)
    return failed


def _sweep_tags(spec: Spec, stores: Stores) -> dict[str, str]:
    data = setup_from_spec(spec).load()
    return {
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        "dataset_task": data.task,
        "spec_hash": spec.spec_hash(),
        "search_hash": spec.search_hash(),
        "optuna_storage": stores.describe_storage() if stores.embedded else tracking.redact(stores.storage_url),
    }


@interrupts.shield  # never a parent run in MLflow whose id the study did not get
def open_parent_run(spec: Spec, study, stores: Stores, lock: TrialLock):
    """The sweep's MLflow parent run: the one whose id the study keeps, or a new one (created once, under
    the trial lock, so workers starting together share it)."""
    with lock.held():
        parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
        sweep_run = tracking.start_sweep(
            spec.name,
            tracking_uri=stores.tracking_uri,
            study_name=spec.name,
            existing_run_id=parent_id,
            tags=_sweep_tags(spec, stores),
            params=setting_params(spec),
            trial_params=setting_params(spec, trial=True),
            inputs=dataset_inputs(spec, setup_from_spec(spec).load()),
        )
        if sweep_run.run_id != parent_id:
            study.set_user_attr(PARENT_RUN_ATTR, sweep_run.run_id)
    return sweep_run


def close_stale_runs(stores: Stores) -> Callable:
    """The storage's callback for a trial whose worker stopped sending heartbeats: end its MLflow run
    FAILED (not left RUNNING), then let Optuna's retry callback queue the same parameters again."""
    import optuna  # here, not at the top: reading a sweep's result (runner.load_result) may not need Optuna yet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)

    def callback(study, trial) -> None:
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if run_id:
            fail_run(stores, run_id, STALE_REASON)
        # The retry starts afresh: not "lost" and without the reason its predecessor failed for.
        retry_of = copy.copy(trial)
        retry_of.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in (OUTCOME_ATTR, REASON_ATTR)}
        retry(study, retry_of)

    return callback


def fail_run(stores: Stores, run_id: str, reason: str) -> None:
    """Mark the MLflow run of a trial that Optuna has just failed FAILED with ``reason``, unless it is already.

    A run that ended otherwise is overwritten too: a worker killed after closing its run but before telling
    Optuna leaves it FINISHED (or KILLED) while Optuna fails and retries the trial, and the stores must agree.
    """
    tracking.fail_trial_run(stores.tracking_uri, run_id, reason)
