"""Claiming the next trial for one of many workers on a database storage, with exact totals and O(1) work
under the study-wide lock.

``trials: N`` means N across all workers, so "may I start one more?" must be answered under a lock every
worker shares. Counting the study's trials there (every trial, every ask) made each ask slower as the study
grew, and every worker queued behind it. Here the lock guards a counter instead:

- ``charged`` (study system attr ``optsweep_claims``) = trials that count, run or wait to be retried. A fresh
  trial adds one; popping a queued retry adds none (the lost trial's charge passes to its retry).
- Under the lock a worker reads that one row, pops a WAITING trial (a state-filtered query: only queued
  retries), else creates a trial if ``charged < total``, records its owner and first heartbeat: a handful of
  single-row statements, whatever the size of the study.
- Stale trials (no heartbeat for the grace period) are looked for at most once per heartbeat interval across
  all workers, among RUNNING trials only.
- A trial that ends without counting and without a retry (interrupted, or lost after its last retry) leaves
  ``charged`` one too high; when the counter says the budget is spent, it is recounted exactly from every
  trial (once per heartbeat interval, and before a worker leaves with nothing running). So the full scan
  happens at the end of a sweep, not at every ask.

The caller asks Optuna for the sampled trial outside the lock: ``optuna.Trial(study, trial_id)`` is what
``Study.ask`` does after popping or creating a trial, and the sampler's work (which reads every trial) then
runs in parallel across workers.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sweeps.errors import SweepError
from sweeps.study.trial_lifecycle import COUNTED_OUTCOMES, OUTCOME_ATTR, REASON_ATTR, RUN_ID_ATTR

log = logging.getLogger("sweeps")
T = TypeVar("T")
# How long a worker keeps trying to reach its storage before it gives up (SWEEPS_STORAGE_RETRY_SECONDS).
RETRY_SECONDS = float(os.environ.get("SWEEPS_STORAGE_RETRY_SECONDS", "120"))
STATE_ATTR = "optsweep_claims"  # study system attr: {"charged", "stale_checked", "recounted", "settled"}
STALE_REASON = "worker stopped responding (no heartbeat); retried by another worker"


@dataclass
class Claimed:
    """What one claim found: the trial to run (None: nothing left to start now), how many trials run now
    (only counted when nothing was claimed), and the MLflow run ids of stale trials it failed."""

    trial_id: int | None
    running: int = 0
    charged: int = 0
    stale_runs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"trial_id": self.trial_id, "running": self.running, "charged": self.charged, "stale": self.stale_runs}

    @classmethod
    def from_dict(cls, d: dict) -> Claimed:
        return cls(d["trial_id"], d["running"], d["charged"], list(d["stale"]))


def backend(storage):
    """The storage under Optuna's in-process cache (state-filtered queries go to the database)."""
    return getattr(storage, "_backend", storage)


def recount(study) -> tuple[int, int, int]:
    """(counted, running, waiting) from every trial: the exact, O(trials) count."""
    from optuna.trial import TrialState

    done = running = waiting = 0
    for t in backend(study._storage).get_all_trials(study._study_id, deepcopy=False):
        if t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.WAITING:
            waiting += 1
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) or t.user_attrs.get(OUTCOME_ATTR) in COUNTED_OUTCOMES:
            done += 1
    return done, running, waiting


def count_running(study) -> int:
    """The study's RUNNING trials, read from the database (a state-filtered query, past Optuna's cache)."""
    from optuna.trial import TrialState

    return len(backend(study._storage).get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)))


def _heartbeat_seconds(storage) -> int | None:
    getter = getattr(storage, "get_heartbeat_interval", None)
    return getter() if getter is not None else None


def claim(study, total: int, owner: dict, *, now: float | None = None) -> Claimed:
    """Pop a queued retry or start a fresh trial if the budget allows; call under the study-wide lock.

    The trial is RUNNING when this returns, with ``owner`` recorded (system attr ``owner``) and a first
    heartbeat, so a worker that dies right after still has its trial failed and retried."""
    from sweeps.study.owners import OWNER_ATTR

    storage, sid = study._storage, study._study_id
    db = backend(storage)
    now = time.time() if now is None else now
    every = _heartbeat_seconds(storage) or 10
    state = dict(db.get_study_system_attrs(sid).get(STATE_ATTR) or {})
    before = dict(state)
    result = Claimed(None)
    if now - state.get("stale_checked", 0) >= every:
        result.stale_runs = fail_stale(study)
        state["stale_checked"] = now
    if "charged" not in state:
        done, running, waiting = recount(study)
        state |= {"charged": done + running + waiting, "recounted": now}
    trial_id = _pop_waiting(db, sid)
    if trial_id is None and state["charged"] >= total and now - state.get("recounted", 0) >= every:
        done, running, waiting = recount(study)
        state |= {"charged": done + running + waiting, "recounted": now}
    if trial_id is None and state["charged"] < total:
        trial_id = storage.create_new_trial(sid)  # through Optuna's cache, which then knows the trial
        state["charged"] += 1
        state.pop("settled", None)
    if trial_id is not None:
        db.set_trial_system_attr(trial_id, OWNER_ATTR, owner)
        if _heartbeat_seconds(storage):
            db.record_heartbeat(trial_id)
    else:
        result.running = count_running(study)
        if result.running == 0 and not state.get("settled"):
            # About to leave: make sure nothing ended uncounted since the last recount.
            done, running, waiting = recount(study)
            state |= {"charged": done + running + waiting, "recounted": now, "settled": running == 0}
            if state["charged"] < total or waiting:
                state.pop("settled", None)
                if state != before:
                    db.set_study_system_attr(sid, STATE_ATTR, state)
                return claim(study, total, owner, now=now)
    result.trial_id, result.charged = trial_id, state["charged"]
    if state != before:
        db.set_study_system_attr(sid, STATE_ATTR, state)
    return result


def make_known(study, trial_id: int) -> None:
    """Let Optuna's in-process cache know a trial another process created (a popped retry, or one the proxy
    created): it refuses parameters for trials it has not seen. Reads only trials new to it; call outside
    the lock."""
    from optuna.trial import TrialState

    storage = study._storage
    known = getattr(storage, "_trial_id_to_study_id_and_number", None)
    if known is not None and trial_id not in known:
        storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))


def _pop_waiting(db, sid: int) -> int | None:
    """Set a queued (WAITING) trial RUNNING, as ``Study.ask`` does; None when none is queued."""
    import optuna
    from optuna.trial import TrialState

    for t in db.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if db.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def fail_stale(study) -> list[str]:
    """Fail the RUNNING trials whose worker stopped beating (outcome ``lost``, a ``fail_reason``) and queue
    their setting again (at most 3 retries); returns their MLflow run ids, for the caller to fail there."""
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
        return []
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    db = backend(storage)
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        try:
            db.set_trial_user_attr(trial_id, OUTCOME_ATTR, "lost")
            db.set_trial_user_attr(trial_id, REASON_ATTR, STALE_REASON)
            if not db.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        trial = db.get_trial(trial_id)
        if trial.user_attrs.get(RUN_ID_ATTR):
            runs.append(trial.user_attrs[RUN_ID_ATTR])
        # The retry starts afresh: not "lost" and without the reason its predecessor failed for.
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in (OUTCOME_ATTR, REASON_ATTR)}
        retry(study, trial)
    return runs


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the storage cannot be reached now (worth retrying), not that a call was wrong."""
    import optuna

    if isinstance(error, optuna.exceptions.StorageInternalError):
        return True
    try:
        import sqlalchemy

        if isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
            return True
    except ImportError:
        pass
    try:
        import grpc

        codes = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        return isinstance(error, grpc.RpcError) and error.code() in codes
    except ImportError:
        return False


def retrying(call: Callable[[], T], where: str, seconds: float | None = None) -> T:
    """``call()``, retried with backoff (0.5 s doubling to 10 s) while the storage cannot be reached, for at
    most ``seconds`` (default :data:`RETRY_SECONDS`); then one clear :class:`SweepError`."""
    seconds = RETRY_SECONDS if seconds is None else seconds
    deadline, delay, warned = time.monotonic() + seconds, 0.5, False
    while True:
        try:
            return call()
        except Exception as e:
            if not unreachable(e):
                raise
            if time.monotonic() + delay > deadline:
                raise SweepError(
                    f"cannot reach {where} (tried for {seconds:.0f} s: {type(e).__name__}); this worker stops "
                    "without starting another trial. Nothing it ran stays RUNNING for long: a trial it had "
                    "started stops beating and the next worker to claim fails it and queues it again. "
                    "Set SWEEPS_STORAGE_RETRY_SECONDS to wait longer."
                ) from e
            if not warned:
                log.warning("cannot reach %s (%s); retrying for up to %.0f s", where, type(e).__name__, seconds)
                warned = True
            time.sleep(delay)
            delay = min(2 * delay, 10.0)
