"""One trial, end to end: sample, train with optcore, report to Optuna and MLflow, and record how it ended.

Every way a trial can end leaves the same story in both stores:

    completed            Optuna COMPLETE  ·  MLflow FINISHED
    pruned               Optuna PRUNED    ·  MLflow KILLED, partial curve, tag pruned_at_epoch
    cost diverged/error  Optuna FAIL      ·  MLflow FAILED, tag fail_reason ("cost diverged at epoch 7, …")
    interrupted          Optuna FAIL      ·  MLflow FAILED, fail_reason "interrupted (SIGINT)"; not counted,
                                             so running the sweep again trains a replacement
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import optcore
from optcore import EpochRecord, History
from sweeps import threads
from sweeps.errors import Interrupted
from sweeps.spec import Spec
from sweeps.trainer import TrainingSetup, train_trial, trial_seed
from tracking.schema import Outcome

log = logging.getLogger("sweeps")

# Trial user attributes (the link between Optuna and MLflow, and the trial's outcome).
RUN_ID_ATTR = "mlflow_run_id"
RUN_TRIAL_ATTR = "mlflow_run_trial"
SEED_ATTR = "seed"
OUTCOME_ATTR = "outcome"  # completed | pruned | failed | interrupted
REASON_ATTR = "fail_reason"
WORKER_ATTR = "worker"
PARAMS_ATTR = "hyperparameters"  # the full setting, fixed values included
COUNTED_OUTCOMES = ("completed", "pruned", "failed")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def objective_values(spec: Spec, history: History) -> list[float]:
    values = {
        "final_val_cost": history.final_val_cost,
        "min_val_cost": history.best_val_cost,
        "final_train_cost": history.final_train_cost,
        "train_seconds": history.train_seconds,
    }
    return [values[name] for name in spec.objectives]


def setup_from_spec(spec: Spec) -> TrainingSetup:
    return TrainingSetup(
        dataset=spec.dataset.name,
        dataset_params=tuple(sorted(spec.dataset.load_kwargs().items())),
        val_fraction=spec.dataset.val_fraction,
        data_seed=spec.seed,
        hidden=tuple(spec.model.hidden),
        activation=spec.model.activation,
        l2=spec.model.l2,
        init=spec.model.init,
        dtype=spec.model.dtype,
        epochs=spec.training.epochs,
        schedule_unit=spec.training.schedule_unit,
        record_minibatch=spec.training.record_minibatch,
        ewa_beta=spec.training.ewa_beta,
        noise_scale=spec.training.noise_scale,
    )


@dataclass
class _Progress:
    """The epoch callback: live curves to MLflow, intermediate values to Optuna, the pruning decision."""

    trial: object
    run: object
    prune: bool
    history: History | None = None
    logged_iterations: int = 0

    def __call__(self, record: EpochRecord, history: History) -> bool:
        self.history = history
        costs = history.minibatch_cost[self.logged_iterations :]
        ewa = history.minibatch_cost_ewa[self.logged_iterations :]
        self.logged_iterations = len(history.minibatch_cost)
        self.run.log_epoch(record, costs, ewa)
        if not self.prune:
            return False
        self.trial.report(record.val_cost, record.epoch)
        return bool(self.trial.should_prune())


def run_trial(spec: Spec, study, trial, sweep_run, setup: TrainingSetup, tags: dict[str, str]) -> str:
    """Train ``trial`` (an Optuna trial from ``study.ask()``) and tell the study how it ended.

    Returns the outcome. Re-raises KeyboardInterrupt and :class:`Interrupted` after recording them.
    """
    import optuna

    from sweeps.space import suggest

    hp = suggest(trial, spec)
    seed = trial_seed(spec.seed, trial.number)
    # The BLAS thread count changes the round-off; `sweeps reproduce` retrains under the same count.
    blas_threads = threads.current()
    blas = {threads.TAG: str(blas_threads)} if blas_threads is not None else {}
    trial.set_user_attr(SEED_ATTR, seed)
    if blas_threads is not None:
        trial.set_user_attr(threads.TAG, blas_threads)
    trial.set_user_attr(WORKER_ATTR, worker_name())
    trial.set_user_attr(PARAMS_ATTR, hp)
    # A retried trial carries its predecessor's attributes; only a run of this very trial is reused.
    existing = trial.user_attrs.get(RUN_ID_ATTR) if trial.user_attrs.get(RUN_TRIAL_ATTR) == trial.number else None
    run = sweep_run.trial(
        trial.number,
        hp,
        seed=seed,
        tags={**tags, "trial_number": str(trial.number), **blas},
        existing_run_id=existing,
        metric_name=optcore.LOSSES[setup.load().task].metric_name,
        new=existing is None,  # the trial comes from study.ask(): a trial number is never asked twice
    )
    trial.set_user_attr(RUN_ID_ATTR, run.run_id)
    trial.set_user_attr(RUN_TRIAL_ATTR, trial.number)
    progress = _Progress(trial, run, prune=len(spec.objectives) == 1 and spec.pruner.name != "none")
    empty = History(run.metric_name)

    def fail(outcome: str, reason: str, history: History | None) -> None:
        trial.set_user_attr(OUTCOME_ATTR, outcome)
        trial.set_user_attr(REASON_ATTR, reason)
        try:
            run.finish(Outcome.FAIL, history or progress.history or empty, reason=reason)
        finally:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    try:
        history = train_trial(setup, hp, seed, callback=progress)
    except optcore.DivergenceError as e:
        fail("failed", str(e), e.history)
        log.info("trial %d failed: %s", trial.number, e)
        return "failed"
    except KeyboardInterrupt:
        fail("interrupted", "interrupted (SIGINT)", None)
        raise
    except Interrupted as e:
        fail("interrupted", f"interrupted ({e.signal_name})", None)
        raise
    except Exception as e:  # a bug or a bad combination: record it, keep the sweep going
        fail("failed", f"{type(e).__name__}: {e}", None)
        log.warning("trial %d failed: %s: %s", trial.number, type(e).__name__, e)
        return "failed"

    if history.stopped_early:
        trial.set_user_attr(OUTCOME_ATTR, "pruned")
        run.finish(Outcome.PRUNED, history)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return "pruned"
    values = objective_values(spec, history)
    trial.set_user_attr(OUTCOME_ATTR, "completed")
    run.finish(Outcome.COMPLETE, history)
    study.tell(trial, values if len(values) > 1 else values[0])
    return "completed"
