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
from collections.abc import Callable
from dataclasses import dataclass

import optcore
from optcore import EpochRecord, History
from sweeps import blas_threads as threads
from sweeps.errors import Interrupted
from sweeps.optcore_adapter import TrainingSetup, train_trial, trial_seed
from sweeps.spec import OBJECTIVES, Spec
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
    """The spec's objectives for a trained trial, in order (see ``OBJECTIVES``)."""
    return [OBJECTIVES[name].value(history) for name in spec.objectives]


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


@dataclass
class Ending:
    """How one training run ended, once its MLflow run is finished: ``outcome`` (completed, pruned, failed
    or interrupted), the history it reached, the ``reason`` of a failure and, for a failure that is not a
    diverged cost (a bug or a bad combination), the ``error`` itself."""

    outcome: str
    history: History
    reason: str | None = None
    error: Exception | None = None


def train_and_record(
    setup: TrainingSetup,
    hp: dict,
    seed: int,
    run,
    callback,
    *,
    max_seconds: float | None = None,
    before_finish: Callable[[Ending], None] | None = None,
    after_finish: Callable[[Ending], None] | None = None,
) -> Ending:
    """Train ``hp`` into the MLflow trial run ``run`` and finish the run by how training ended: the one
    trial lifecycle of the sweep's trials and of the batch-size and confirm runs (table in the module
    docstring). ``callback`` is the epoch callback; its ``history`` is the partial curve a failure keeps.

    ``before_finish`` and ``after_finish`` see the ending just before and after the run is finished (the
    sweep records it on the Optuna trial, then tells the study); after a failure ``after_finish`` runs even
    when finishing the run raised. A diverged cost or any other exception is returned as a failure; an
    interrupt (KeyboardInterrupt, :class:`Interrupted`) is recorded and raised again.
    """
    empty = History(run.metric_name)

    def end(outcome: str, history: History | None, reason: str | None = None, error=None) -> Ending:
        ending = Ending(outcome, history or callback.history or empty, reason, error)
        if before_finish is not None:
            before_finish(ending)
        if outcome in ("completed", "pruned"):
            run.finish(Outcome.parse(outcome), ending.history)
            if after_finish is not None:
                after_finish(ending)
            return ending
        try:
            run.finish(Outcome.FAIL, ending.history, reason=reason)
        finally:
            if after_finish is not None:
                after_finish(ending)
        return ending

    try:
        history = train_trial(setup, hp, seed, callback=callback, max_seconds=max_seconds)
    except optcore.DivergenceError as e:
        return end("failed", e.history, str(e))
    except KeyboardInterrupt:
        end("interrupted", None, "interrupted (SIGINT)")
        raise
    except Interrupted as e:
        end("interrupted", None, f"interrupted ({e.signal_name})")
        raise
    except Exception as e:  # a bug or a bad combination: recorded; the caller decides whether to go on
        return end("failed", None, f"{type(e).__name__}: {e}", e)
    return end("pruned" if history.stopped_early else "completed", history)


def run_trial(spec: Spec, study, trial, sweep_run, setup: TrainingSetup, tags: dict[str, str]) -> str:
    """Train ``trial`` (an Optuna trial from ``study.ask()``) and tell the study how it ended.

    Returns the outcome. Re-raises KeyboardInterrupt and :class:`Interrupted` after recording them.
    """
    import optuna

    from sweeps.study.space import suggest

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

    def note(ending: Ending) -> None:  # on the Optuna trial, before the run is finished
        trial.set_user_attr(OUTCOME_ATTR, ending.outcome)
        if ending.reason is not None:
            trial.set_user_attr(REASON_ATTR, ending.reason)

    # The study is told only once the run's end is in the store: the trainer waits for it (~5-10 ms a trial
    # on the embedded store, one fsynced transaction of the tracking writer). Optuna's state is what a
    # resume trusts, so it must never claim a trial whose curves and end MLflow may still lose: a process
    # killed between the two leaves a RUNNING trial, which the resume fails (its run, curves kept, marked
    # FAILED to agree: parent_run.fail_run) and trains again. Told first, the same kill with the writer
    # (or a machine's crash) could leave a completed trial whose run lacks its last epochs and its end.
    def tell(ending: Ending) -> None:  # and the study, once the run is
        if ending.outcome == "completed":
            values = objective_values(spec, ending.history)
            study.tell(trial, values if len(values) > 1 else values[0])
        else:
            state = optuna.trial.TrialState.PRUNED if ending.outcome == "pruned" else optuna.trial.TrialState.FAIL
            study.tell(trial, state=state)

    ending = train_and_record(setup, hp, seed, run, progress, before_finish=note, after_finish=tell)
    if ending.outcome == "failed" and ending.error is None:
        log.info("trial %d failed: %s", trial.number, ending.reason)
    elif ending.outcome == "failed":
        log.warning("trial %d failed: %s", trial.number, ending.reason)
    return ending.outcome
