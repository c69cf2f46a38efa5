"""Run a sweep: open (or resume) the study and its MLflow parent run, then train trials until the spec's
total is reached — by this process alone or together with other workers on the same storage."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweeps import blas_threads as threads
from sweeps.errors import SweepError
from sweeps.spec import Spec
from sweeps.study import interrupts, owners, stopping
from sweeps.study.claims import STALE_REASON
from sweeps.study.parent_run import (
    PARENT_RUN_ATTR,
    close_stale_runs,
    fail_orphaned_runs,
    fail_run,
    open_parent_run,
    summary_settings,
    update_parent_summary,
)
from sweeps.study.result import SweepResult, summarise
from sweeps.study.storage import Stores, TrialLock, close_storage, heartbeat, open_storage, resolve_stores
from sweeps.study.trial_lifecycle import (
    COUNTED_OUTCOMES,
    OUTCOME_ATTR,
    REASON_ATTR,
    run_trial,
    setup_from_spec,
)

log = logging.getLogger("sweeps")

SPEC_HASH_ATTR = "spec_hash"
SPEC_ATTR = "spec"
DATA_ATTR = "dataset_fingerprint"
# The number of trials the study held when a run last summarised the finished sweep (parent run's summary
# written, run FINISHED): a rerun that finds the same trials has nothing to write (:func:`finished_result`).
SUMMARISED_ATTR = "summarised_trials"
# The count of finished trials whose summary a worker took on drawing (see _summary_is_mine).
SUMMARY_CLAIM_ATTR = "summary_claimed_at"
# How often a worker waiting for other workers' trials looks whether one has ended (_wait_while_running).
RUNNING_POLL_SECONDS = 1.0


def resume_seed(spec_seed: int, n_trials: int) -> int:
    """The sampler's seed when a sweep resumes a study that holds ``n_trials`` trials.

    Seeded with the spec's seed again, the sampler would replay the settings it proposed when the sweep
    started (trial 4 of a sweep resumed after 4 trials would repeat trial 0). A seed drawn from the spec's
    seed and the trial count avoids that and keeps the resumed sweep reproducible: the same spec, stopped
    and resumed at the same points, gives the same trials.
    """
    import numpy as np

    return int(np.random.SeedSequence(spec_seed, spawn_key=(n_trials,)).generate_state(1)[0])


def counts(study) -> tuple[int, int, int]:
    """(trials that count toward the total, trials running now, trials waiting to be retried)."""
    from optuna.trial import TrialState

    done = running = waiting = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.WAITING:
            waiting += 1
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) or t.user_attrs.get(OUTCOME_ATTR) in COUNTED_OUTCOMES:
            done += 1
    return done, running, waiting


def target_total(spec: Spec) -> int:
    """How many trials the sweep runs: ``trials``, or fewer when a grid has fewer points."""
    if spec.sampler.name == "grid":
        from sweeps.study.samplers import grid_size

        return min(spec.trials, grid_size(spec))
    return spec.trials


@interrupts.shield  # its writes (study, spec and data attributes) are made whole or not at all
def open_study(spec: Spec, stores: Stores, stale_trial_callback: Callable | None = None):
    """Create the study named ``spec.name`` or load it; refuse one created from a different search."""
    import optuna

    from sweeps.study.pruners import build_pruner
    from sweeps.study.samplers import build_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(stores, stale_trial_callback)
    # Only a journal can lose a study under its parent run; on PostgreSQL, workers starting together would
    # race (one sees the other's parent run a moment before its study), so the check is the journal's.
    if stores.embedded and spec.name not in {s.study_name for s in storage.get_all_studies()}:
        from sweeps.study.journal import refuse_lost_study

        refuse_lost_study(spec.name, stores)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        sampler=build_sampler(spec),
        pruner=build_pruner(spec),
        directions=spec.directions,
        load_if_exists=True,
    )
    name_objectives(study, spec)
    data = setup_from_spec(spec).load()
    if study.user_attrs.get(SPEC_HASH_ATTR) is None:
        study.set_user_attr(SPEC_HASH_ATTR, spec.search_hash())
        study.set_user_attr(SPEC_ATTR, spec.resolved())
        study.set_user_attr(DATA_ATTR, data.fingerprint)
        return study
    refuse_other_search(study, spec, stores)
    if study.user_attrs.get(DATA_ATTR, data.fingerprint) != data.fingerprint:  # older sweeps did not store it
        raise SweepError(
            f"the sweep {spec.name!r} was run on other data: dataset {data.name!r} has fingerprint "
            f"{data.fingerprint}, the sweep's was {study.user_attrs[DATA_ATTR]} (has the file changed?). "
            "Rename the sweep (`name:`) or use another --workdir/--storage to sweep the new data."
        )
    return study


def refuse_other_search(study, spec: Spec, stores: Stores) -> None:
    """Raise SweepError when ``study`` was started from another search than ``spec``'s: only ``trials`` may
    change when a sweep is resumed."""
    stored = study.user_attrs.get(SPEC_HASH_ATTR)
    if stored is not None and stored != spec.search_hash():
        raise SweepError(
            f"the sweep {spec.name!r} in {stores.describe_storage()} was started from a different spec "
            f"(search hash {stored}, this spec {spec.search_hash()}); only `trials` may change when resuming. "
            f"To start a separate sweep, give it its own name (--set name={spec.name}-2, or `name:` in the spec) "
            "or another --workdir/--storage; to continue this one, run the spec it started from."
        )


def name_objectives(study, spec: Spec) -> None:
    """Name the study's objectives (``final_val_cost``, …) in the storage, so optuna-dashboard and Optuna's
    plots label them instead of showing "Objective 0"."""
    import warnings

    import optuna

    if study.metric_names is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.objectives))


@interrupts.handling()
@threads.limited()  # BLAS threads for the whole sweep (sweeps.blas_threads)
def run(
    spec: Spec | str | Path,
    *,
    workdir: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    on_trial: Callable[[Any, int, int], None] | None = None,
    on_start: Callable[[], None] | None = None,
    on_trials_done: Callable[[SweepResult, Any], Callable[[], bool] | None] | None = None,
    summary_elsewhere: bool = False,
    finalize: bool = True,
    worker: bool = False,
) -> SweepResult:
    """Train trials of ``spec`` (a Spec, or the path of a spec file) until ``spec.trials`` count in
    total (completed, pruned or failed), then summarise. Resuming — running again with the same spec and
    stores — continues the same study and MLflow parent run. ``on_trial(study, done, total)`` is called
    after every trial (progress display); ``on_start()`` once the tracking writer runs, the last child process
    this one forks, which it can only do while it has one thread: a display with a thread of its own starts
    there (the CLI's progress bar on a terminal); ``on_trials_done(result, summary)`` when this process is
    about to draw the parent run's summary, with the result as the trials left it: work that only reads
    them can run beside the summary there (the CLI's report child composes the report). With
    ``summary_elsewhere``, ``summary`` is the request to draw that summary (``SweepRun.summary_request``),
    which the callback may take over: it returns a function that waits for it and says whether it was drawn
    (if not, or if it returns None, this process draws it), and the tracking writer does not load the
    summary's libraries while the trials train (~0.7 s of CPU beside them). ``finalize=False`` (a worker
    under a coordinator) leaves the parent run's summary to the coordinator. ``worker=True`` (one of
    several processes on the study)
    reseeds the sampler at random, as Optuna does for parallel jobs: with the spec's seed every worker
    would propose the same settings. A resumed sweep seeds it with :func:`resume_seed`.

    Raises :class:`SweepError` when the stores cannot be used, and lets KeyboardInterrupt or
    :class:`sweeps.errors.Interrupted` through after recording the interrupted trial. Called from the main
    thread, it takes SIGINT and SIGTERM at safe points only (:mod:`sweeps.study.interrupts`).
    """

    # Start-up (imports, data, creating the stores, probing a server: up to tens of seconds) gives way to a
    # signal at once; only its writes to the stores are shielded (each is short), and the MLflow store is
    # created whole or not at all.
    with interrupts.interruptible():
        if not isinstance(spec, Spec):
            from sweeps.spec import load_spec

            spec = load_spec(spec)
        from sweeps.study.samplers import check_available

        check_available(spec)  # before any store is created
        # So is a table's data: a bad file stops the sweep with nothing written. A registry dataset's
        # parameters were checked with the spec, and its arrays are a function of them: it is loaded (1-3 s,
        # mostly importing scikit-learn) while the writer loads MLflow and creates the store on another core.
        data_first = spec.dataset.source != "name"
        if data_first:
            setup_from_spec(spec).load()
        stores = resolve_stores(workdir, storage, tracking_uri)
        check_stores(stores)
        import tracking

        tracking.begin_git_state()  # the parent run's provenance: `git status` runs while the sweep starts

        # The writer opens the store (loading MLflow first unless the store is written directly) while the
        # data, study and parent run are opened here. It loads what the summary draws with ahead of time
        # only for a lone sweep whose summary it will draw: not for one of many workers (one of them draws
        # it, _summary_is_mine, and loads it then), nor when another process draws it without MLflow
        # (summary_elsewhere, on a store written directly).
        with interrupts.shielded():
            summary_elsewhere = summary_elsewhere and tracking.written_directly(stores.tracking_uri)
            tracking.start_writer(stores.tracking_uri, summary=finalize and not worker and not summary_elsewhere)
        if on_start is not None:
            on_start()
        if not data_first:
            setup_from_spec(spec).load()
        study = open_study(spec, stores, close_stale_runs(stores))
        if worker:
            study.sampler.reseed_rng()
        elif existing := len(study.get_trials(deepcopy=False)):
            from sweeps.study.samplers import build_sampler

            study.sampler = build_sampler(spec.model_copy(update={"seed": resume_seed(spec.seed, existing)}))
        stopping.open_session(study, spec, reset_clock=not worker)
    lock = TrialLock(stores, spec.name)
    try:
        sweep_run = open_parent_run(spec, study, stores, lock)
        fail_orphaned_runs(sweep_run, study)  # a worker killed while failing a stale trial left its run RUNNING
        setup = setup_from_spec(spec)
        tags = {**sweep_run.tags}
        total = target_total(spec)
        starting = True
        scaled = _claims_apply(stores, spec)
        while True:
            interrupts.check()
            if scaled:
                trial, running = _claim_trial(study, spec, stores, lock, total)
                if trial is None:
                    if running:  # a dead worker's trial is retried: stay for it
                        _wait_while_running(study, running)
                        continue
                    done, running, _ = counts(study)
                    halt = None
                    break
                try:
                    with heartbeat(study, trial):
                        run_trial(spec, study, trial, sweep_run, setup, tags)
                except BaseException:
                    if finalize:
                        update_parent_summary(sweep_run, spec, study)
                    raise
                if on_trial is not None and not getattr(on_trial, "quiet", False):  # counting reads every trial
                    on_trial(study, counts(study)[0], total)
                continue
            with lock.held():
                _fail_stale(study)
                done, running, waiting = counts(study)
                # Before trusting RUNNING trials (at the start, and before stopping for them), fail and
                # queue again those whose process is gone (the embedded store has no heartbeats).
                halt = stopping.check(study, spec)  # the spec's stop block, decided by any worker
                winding_down = running and (halt or not (done + running < total or waiting))
                if (starting or winding_down) and _reclaim(study, stores, sweep_run):
                    done, running, waiting = counts(study)
                starting = False
                trial = _ask(study) if not halt and (done + running < total or waiting) else None
                if trial is not None:
                    owners.claim(study, trial)
            if trial is None:
                if running and _beats(study) and not halt:
                    # Trials of other workers are still running. If one of them died, its heartbeat stops
                    # and, after the grace period, it is failed and queued again: stay to pick it up.
                    _wait_while_running(study, running)
                    continue
                break
            try:
                with heartbeat(study, trial):
                    run_trial(spec, study, trial, sweep_run, setup, tags)
            except BaseException:
                if finalize:
                    update_parent_summary(sweep_run, spec, study)
                raise
            if spec.stop is not None:
                with lock.held():
                    stopping.check(study, spec)  # now, so that the progress bar can show it
            if on_trial is not None:
                on_trial(study, counts(study)[0], total)
        # done and running are those counted under the lock when the loop found nothing left to ask.
        if finalize and (not worker or _summary_is_mine(study, lock, done, running)):
            fail_orphaned_runs(sweep_run, study)  # before the summary reads the runs: it counts them
            settings = summary_settings(spec, study)
            drawn = None
            if on_trials_done is not None:
                request = sweep_run.summary_request(**settings) if summary_elsewhere else None
                try:
                    drawn = on_trials_done(summarise(spec, study, sweep_run.run_id, stores), request)
                except Exception as e:  # work beside the summary (the report): it must not cost the summary
                    log.warning("at the end of the trials: %s: %s", type(e).__name__, tracking.redact(str(e)))
            if drawn is None or not drawn():
                sweep_run.update_summary(**settings, table=False)
            stopping.tag_parent(sweep_run, study, spec)
            if (done >= total or halt) and running == 0:
                sweep_run.finish("FINISHED")
                mark_summarised(study)
    finally:
        lock.close()
    return summarise(spec, study, sweep_run.run_id, stores)


def _summary_is_mine(study, lock: TrialLock, done: int, running: int) -> bool:
    """Whether this worker, one of many independent ones, draws the parent run's summary as it leaves.

    Drawing it reads every trial's curves from MLflow: every worker doing so made O(workers x trials)
    requests at the end of a sweep (12,288 for 64 workers and 192 trials, which exhausted the tracking
    server's pool). So it is drawn once per count of finished trials: by the first worker to leave with no
    trial running, which records that count in the study (under the trial lock) for the others to see. A
    worker leaving while trials still run leaves it to them. If the one that claimed it is killed first,
    `sweeps run` on the finished sweep draws it (:func:`finished_result` sees it was not recorded)."""
    if running:
        return False
    with lock.held():
        if study.user_attrs.get(SUMMARY_CLAIM_ATTR) == done:
            return False
        study.set_user_attr(SUMMARY_CLAIM_ATTR, done)
    return True


def _claims_apply(stores: Stores, spec: Spec) -> bool:
    """Whether trials are claimed with :mod:`sweeps.study.claims` (O(1) under the lock): on database storages and
    through ``sweeps proxy``, unless the spec has a ``stop`` block (its rules read every trial anyway, and its
    noise repeats are queued outside the claim counter)."""
    return not stores.embedded and spec.stop is None


def _claim_trial(study, spec: Spec, stores: Stores, lock: TrialLock, total: int):
    """(trial or None, trials running): the next trial of this worker, claimed under the study-wide lock (in
    the proxy, for ``grpc://``) and sampled outside it."""
    import optuna

    from sweeps.study import claims

    owner = owners.owner_attr()

    def claim():
        if hasattr(study._storage, "claim"):  # sweeps proxy: the claim runs next to the database
            return study._storage.claim(spec.name, total, owner)
        with lock.held():
            return claims.claim(study, total, owner)

    claimed = claims.retrying(claim, stores.describe_storage())
    for run_id in claimed.stale_runs:  # the trials the claim found stale: fail their MLflow runs too
        fail_run(stores, run_id, claims.STALE_REASON)
    if claimed.trial_id is None:
        return None, claimed.running
    claims.make_known(study, claimed.trial_id)
    study._thread_local.cached_all_trials = None  # as Study.ask does: the sampler reads the study afresh
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return optuna.Trial(study, claimed.trial_id), 1


def check_stores(stores: Stores) -> None:
    """Fail early, before any training, when the tracking server is unreachable or both stores would share
    one database file."""
    import tracking

    storage_for_check = stores.storage_url or f"journal:///{stores.journal_path}"
    tracking.check_separate_databases(stores.tracking_uri, storage_for_check)
    # A new SQLite store is created by the tracking writer, on its own core, while the study is opened.
    tracking.check_reachable(stores.tracking_uri, create=False)


def _wait_while_running(study, running: int) -> None:
    """Wait, as a worker with nothing left to claim while ``running`` trials of other workers run, until one
    of them ends or one heartbeat interval has passed, then let the caller ask again.

    After an interval the next ask fails a dead worker's trial and queues it again; but when the trials
    simply end, waiting out the interval (10 s by default) kept every finished worker, and the end of the
    sweep, that much longer. So the RUNNING trials are counted once a second meanwhile, as a claim counts
    them (:func:`claims.count_running`) but outside the study lock: a row per running trial, though the
    database looks through the study's trials to find them. A storage that does not answer leaves the rest
    of the interval to the ask, which retries with its own messages."""
    from sweeps.study import claims

    deadline = time.monotonic() + (_beats(study) or 1)
    with interrupts.interruptible():
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(RUNNING_POLL_SECONDS, left))
            try:
                now = claims.count_running(study)
            except Exception as e:
                if not claims.unreachable(e):
                    raise
                continue
            if now < running:
                return


def _beats(study) -> int | None:
    """The storage's heartbeat interval in seconds, or None when it has no heartbeats."""
    from optuna.storages._heartbeat import BaseHeartbeat

    storage = study._storage
    return storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None


def _fail_stale(study) -> None:
    """Fail trials whose worker stopped beating, as ``optuna.storages.fail_stale_trials`` does, but with
    outcome ``lost`` and a ``fail_reason`` recorded first (a finished trial takes no attributes), then run
    the storage's stale-trial callback (:func:`close_stale_runs`). A no-op for storages without heartbeats."""
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
        return
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        try:
            storage.set_trial_user_attr(trial_id, OUTCOME_ATTR, "lost")
            storage.set_trial_user_attr(trial_id, REASON_ATTR, STALE_REASON)
            if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                failed.append(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial_id in failed if callback is not None else ():
        callback(study, storage.get_trial(trial_id))


def _reclaim(study, stores: Stores, sweep_run) -> int:
    """Fail (in both stores) and queue again the trials whose process is provably gone; embedded store only,
    where no heartbeat does it. Returns how many; call under the trial lock."""
    if not stores.embedded:
        return 0

    def find_run(number: int) -> str | None:
        run = sweep_run.find_trial(number)
        return run.info.run_id if run is not None else None

    lost = owners.reclaim(study, lambda run_id, reason: fail_run(stores, run_id, reason), find_run)
    for number, reason in lost:
        log.warning("trial %d was left RUNNING (%s): failed, and its setting queued again", number, reason)
    return len(lost)


def _ask(study):
    # Optuna warns that heartbeats are meant for Study.optimize; sweeps beats itself (storage.heartbeat).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


def _existing_study(spec: Spec, stores: Stores):
    """The study named ``spec.name`` if the stores hold it, else None — creating nothing."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if stores.embedded and not stores.journal_path.exists():
        return None
    try:
        return optuna.load_study(study_name=spec.name, storage=open_storage(stores))
    except KeyError:
        return None


def study_counts_for(spec: Spec, workdir: str | Path | None, storage: str | None) -> int:
    """Trials of ``spec``'s sweep already counted (0 for a new sweep); used to start the progress bar. A study
    started from another search is refused here, from the study the bar reads anyway: before the sweep
    loads MLflow (~2 s), which :func:`open_study` would refuse it after."""
    stores = resolve_stores(workdir, storage, "unused")
    study = _existing_study(spec, stores)
    if study is None:
        return 0
    try:
        refuse_other_search(study, spec, stores)
        return counts(study)[0]
    finally:
        close_storage(study._storage)  # its connections: the sweep opens a storage of its own


def mark_summarised(study) -> None:
    """Record that the parent run now summarises every trial of the finished sweep (:func:`finished_result`)."""
    study.set_user_attr(SUMMARISED_ATTR, len(study.get_trials(deepcopy=False)))


def finished_result(
    spec: Spec, *, workdir: str | Path | None = None, storage: str | None = None, tracking_uri: str | None = None
) -> SweepResult | None:
    """The result of ``spec``'s sweep when running it again would train and write nothing, else None.

    That is when the study (started from this search) holds its total of trials, none running or waiting,
    and a run summarised exactly these trials (:data:`SUMMARISED_ATTR`). Read from the Optuna storage only:
    no data is loaded, no MLflow store opened (a rerun answers in about a second instead of ten). Only for
    a registry dataset, whose arrays are a function of the spec (its name, parameters, seed and validation
    fraction are in the search hash); a table file may have changed, so :func:`run` loads it and compares
    fingerprints. A spec with a ``stop`` block takes the full path too (its decision depends on the rules),
    and so does a sweep on a database server (embedded journal only).
    """
    if spec.stop is not None or spec.dataset.source != "name":
        return None
    stores = resolve_stores(workdir, storage, tracking_uri)
    if not stores.embedded:  # a database server is checked and opened in run()'s order, with its messages
        return None
    study = _existing_study(spec, stores)
    if study is None:
        return None
    attrs = study.user_attrs
    if attrs.get(SPEC_HASH_ATTR) != spec.search_hash():
        return None  # run() says why it refuses
    done, running, waiting = counts(study)
    summarised = attrs.get(SUMMARISED_ATTR)
    if running or waiting or done < target_total(spec) or summarised != len(study.get_trials(deepcopy=False)):
        return None
    return summarise(spec, study, attrs.get(PARENT_RUN_ATTR, ""), stores)


def load_result(
    spec: Spec, *, workdir: str | Path | None = None, storage: str | None = None, tracking_uri: str | None = None
) -> SweepResult:
    """The current result of ``spec``'s sweep, read from its stores. Raises SweepError when there is none."""
    stores = resolve_stores(workdir, storage, tracking_uri)
    study = _existing_study(spec, stores)
    if study is None:
        raise SweepError(
            f"no sweep named {spec.name!r} in {stores.describe_storage()}; "
            "run `sweeps run SPEC` first (or pass the same --workdir/--storage)"
        )
    return summarise(spec, study, study.user_attrs.get(PARENT_RUN_ATTR, ""), stores)
