"""``sweeps run --workers K``: K worker processes on one study, on this machine.

The coordinator (this process) prepares everything once — the Optuna study, the MLflow experiment and
parent run — so that workers starting together never race to create a schema or a store. With the
embedded SQLite tracking store it also starts a loopback ``mlflow server`` and points the workers at it:
one process then writes to ``mlflow.db`` and nothing hits "database is locked". Each worker runs
``sweeps worker`` with its BLAS threads limited to cores / K, so K workers do not oversubscribe the cores.

A worker that dies (killed, crashed) has its running trial failed in both stores and queued again with the
same parameters, and a replacement worker starts. SIGINT or SIGTERM is passed on to the workers, which
record their current trial as interrupted; the coordinator then exits 130 or 143.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweeps import blas_threads as threads
from sweeps.errors import Interrupted
from sweeps.spec import Spec
from sweeps.study import interrupts, stopping
from sweeps.study.parent_run import close_stale_runs, fail_run, open_parent_run, update_parent_summary
from sweeps.study.result import SweepResult, summarise
from sweeps.study.runner import check_stores, counts, mark_summarised, open_study, target_total
from sweeps.study.storage import Stores, TrialLock, resolve_stores
from sweeps.study.trial_lifecycle import OUTCOME_ATTR, PARAMS_ATTR, REASON_ATTR, RUN_ID_ATTR, worker_name

log = logging.getLogger("sweeps")
POLL_SECONDS = 0.5
COORDINATOR_VAR = "SWEEPS_COORDINATOR_PID"


def worker_env(workers: int, storage: str | None, tracking_uri: str) -> dict[str, str]:
    """The environment of one worker: BLAS threads from :func:`sweeps.blas_threads.blas_threads` (unless the
    user set them); store URLs passed in the environment (not on the command line, where a password would
    show in the process list)."""
    env = {**os.environ, "SWEEPS_TRACKING_URI": tracking_uri, COORDINATOR_VAR: str(os.getpid())}
    if not threads.user_chose():
        env.update(dict.fromkeys(threads.BLAS_THREAD_VARS, str(threads.blas_threads(workers))))
    if storage:
        env["SWEEPS_STORAGE"] = storage
    else:
        env.pop("SWEEPS_STORAGE", None)
    return env


def follow_coordinator() -> None:
    """In a worker: get SIGTERM when the coordinator dies, however it dies (Linux's parent-death signal).

    Workers run in a session of their own, so without this a coordinator killed with SIGKILL would leave
    them training with nobody to count or summarise. SIGTERM makes a worker record its trial as
    interrupted and exit 143, as when the coordinator passes a signal on."""
    expected = os.environ.get(COORDINATOR_VAR)
    if not expected or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if str(os.getppid()) != expected:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _spawn(spec_file: str, overrides: list[str], stores: Stores, env: dict[str, str]) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "sweeps.cli",
        "worker",
        str(spec_file),
        "--workdir",
        str(stores.workdir),
        "--quiet",
        "--coordinated",
    ]
    for item in overrides:
        cmd += ["--set", item]
    # In a session of its own, a worker gets a Ctrl-C once, from the coordinator, not also from the
    # terminal: a second signal would mean "stop at once, wherever you are" (sweeps.study.interrupts).
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)


def fail_lost_trials(study, stores: Stores, host_pid: str, reason: str) -> int:
    """Fail the RUNNING trials of worker ``host_pid`` in Optuna and MLflow and queue their parameters again.

    Returns how many were failed. Only the coordinator calls this, for workers it saw exit.
    """
    import optuna

    from sweeps.study.owners import owner_of

    lost = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = owner_of(t)  # recorded at `ask`; the worker attr comes later
        if owner is None or f"{owner.host}:{owner.pid}" != host_pid:
            continue
        study._storage.set_trial_user_attr(t._trial_id, OUTCOME_ATTR, "lost")
        study._storage.set_trial_user_attr(t._trial_id, REASON_ATTR, reason)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if t.user_attrs.get(RUN_ID_ATTR):
            fail_run(stores, t.user_attrs[RUN_ID_ATTR], reason)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, PARAMS_ATTR: t.user_attrs.get(PARAMS_ATTR)})
        lost += 1
    return lost


@interrupts.handling()
def run_parallel(
    spec: Spec,
    workers: int,
    *,
    spec_file: str,
    overrides: list[str],
    workdir: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    on_trial: Callable[[Any, int, int], None] | None = None,
) -> SweepResult:
    """Run ``spec`` with ``workers`` processes; return when ``spec.trials`` count in total.

    ``on_trial(study, done, total)`` is called whenever a trial starts or ends (the progress display, as
    for :func:`sweeps.study.runner.run`); None reads the study only to replace dead workers."""
    from sweeps.study.samplers import check_available
    from tracking.server import MlflowServer
    from tracking.store import sqlite_path

    # Start-up gives way to a signal at once (open_study and open_parent_run shield their writes; a server
    # interrupted while starting is stopped), as in sweeps.study.runner.run.
    with interrupts.interruptible():
        check_available(spec)
        stores = resolve_stores(workdir, storage, tracking_uri)
        check_stores(stores)
        study = open_study(spec, stores, close_stale_runs(stores))
        stopping.open_session(study, spec, reset_clock=True)
        lock = TrialLock(stores, spec.name)  # held to fail a dead worker's trials: workers reclaim lost ones too
        try:
            sweep_run = open_parent_run(spec, study, stores, lock)
        except BaseException:
            lock.close()
            raise
        total = target_total(spec)
        if on_trial is not None:  # a resumed sweep's best and counts at once, before the server and workers
            on_trial(study, counts(study)[0], total)

        server = None
        worker_uri = stores.tracking_uri
        if sqlite_path(stores.tracking_uri) is not None:
            server = MlflowServer(
                stores.tracking_uri, stores.workdir / "mlartifacts", log_file=stores.workdir / "mlflow-server.log"
            ).start()
            worker_uri = server.url
    served = Stores(stores.workdir, stores.storage_url, worker_uri)
    env = worker_env(workers, storage, worker_uri)
    procs: list[subprocess.Popen] = []
    respawns_left = 3 * workers
    last_seen: tuple[int, int, int] | None = None
    try:
        procs = [_spawn(spec_file, overrides, stores, env) for _ in range(workers)]
        while procs:
            with interrupts.interruptible():
                time.sleep(POLL_SECONDS)
            for proc in [p for p in procs if p.poll() is not None]:
                procs.remove(proc)
                if proc.returncode == 0:
                    continue
                who = f"{worker_name().split(':')[0]}:{proc.pid}"
                with lock.held():
                    n = fail_lost_trials(study, served, who, f"worker {proc.pid} exited with status {proc.returncode}")
                log.warning(
                    "worker %d exited with status %d; %d running trial(s) failed and queued again",
                    proc.pid,
                    proc.returncode,
                    n,
                )
                done, running, waiting = counts(study)
                if (done + running < total or waiting) and respawns_left > 0 and not stopping.stopped(study, spec):
                    respawns_left -= 1
                    procs.append(_spawn(spec_file, overrides, stores, env))
            if on_trial is None:
                continue  # reading the study costs CPU that the workers' training could use
            seen = counts(study)
            if seen != last_seen:
                on_trial(study, seen[0], total)
                last_seen = seen
    except (KeyboardInterrupt, Interrupted) as e:
        sig = signal.SIGTERM if isinstance(e, Interrupted) else signal.SIGINT
        _stop_workers(procs, sig)
        _finish(spec, study, sweep_run, total)
        raise
    finally:
        _stop_workers(procs, signal.SIGTERM)
        if server is not None:
            server.stop()
        lock.close()
    if on_trial is not None:  # the bar shows why the workers stopped
        on_trial(study, counts(study)[0], total)
    _finish(spec, study, sweep_run, total)
    return summarise(spec, study, sweep_run.run_id, stores)


def _finish(spec: Spec, study, sweep_run, total: int) -> None:
    """Summarise the parent run, from the coordinator's own client (the workers have stopped by now)."""
    update_parent_summary(sweep_run, spec, study)
    stopping.tag_parent(sweep_run, study, spec)
    done, running, _ = counts(study)
    if (done >= total or stopping.stopped(study, spec)) and running == 0:
        sweep_run.finish("FINISHED")
        mark_summarised(study)


def _stop_workers(procs: list[subprocess.Popen], sig: int, timeout: float = 60.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
