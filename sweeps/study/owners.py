"""Which process runs a trial, and whether it still exists: the embedded store's answer to a worker killed
mid-trial (SIGKILL, the OOM killer, a full disk), where PostgreSQL has heartbeats.

A worker records its owner on each trial it starts (Optuna system attr ``owner``), right after ``ask``
and under the trial lock: host name, PID, the process's start time and the machine's boot id and PID
namespace. At the start of a run, and before a run stops with trials still RUNNING, :func:`reclaim` looks
at every RUNNING trial, under the same lock. A trial whose owner is *provably gone* is failed in Optuna
(outcome ``lost``, ``fail_reason``) and in MLflow (run FAILED, tag ``fail_reason``), then queued again with
the same parameters by the retry callback the heartbeat path uses (at most 3 retries of one setting).

Provably gone means: the same host name, and either the machine has restarted since (another boot id), or
in the same PID namespace the PID is free, a zombie, or held by a process that started at another time
(the PID was reused). A trial owned by another host, or by a process in another PID namespace (another
container with the same host name), is left alone: nothing here can tell whether it still runs. A RUNNING
trial with no owner at all was asked by a process that died before recording one (asking and recording
happen under the trial lock, which :func:`reclaim` holds too), or by a version of sweeps before owners;
such a trial is reclaimed when its ``worker`` attr names a gone process of this host, or names none.
A trial of a ``--workers`` worker is left to its coordinator while that lives (it records the exit status).
"""

from __future__ import annotations

import copy
import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sweeps.study.trial_lifecycle import OUTCOME_ATTR, REASON_ATTR, RUN_ID_ATTR, RUN_TRIAL_ATTR, WORKER_ATTR

OWNER_ATTR = "owner"  # Optuna trial system attr: Owner.to_attr(), and the coordinator's under COORDINATOR_KEY
COORDINATOR_KEY = "coordinator"
LOST = "lost"  # the outcome of a trial whose process is gone (also the coordinator's word for it)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of ``pid`` from ``/proc``, or None if no such PID."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return fields[0], fields[19]


def _machine() -> tuple[str | None, str | None]:
    """(boot id, PID namespace) of this process: PIDs are comparable only within both."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return _read("/proc/sys/kernel/random/boot_id"), namespace


@dataclass(frozen=True)
class Owner:
    """One process on one machine; ``started`` tells it from a later process given the same PID."""

    host: str
    pid: int
    started: str | None = None
    boot: str | None = None
    namespace: str | None = None

    @classmethod
    def me(cls) -> Owner:
        return cls.of(os.getpid())

    @classmethod
    def of(cls, pid: int) -> Owner:
        """Process ``pid`` of this machine."""
        stat = _stat(pid)
        boot, namespace = _machine()
        return cls(socket.gethostname(), pid, stat[1] if stat else None, boot, namespace)

    @classmethod
    def from_attr(cls, value: object) -> Owner | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(**{k: v for k, v in value.items() if k != COORDINATOR_KEY})
        except TypeError:
            return None

    def to_attr(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"

    def gone(self) -> str | None:
        """Why this owner provably no longer runs, or None when it may still (or when this cannot tell)."""
        here = Owner.me()
        if self.host != here.host:
            return None
        if self.boot and here.boot and self.boot != here.boot:
            return f"{self.host} has restarted since {self.describe()} started it"
        if self.namespace and here.namespace and self.namespace != here.namespace:
            return None  # another container with this host name: its PIDs are not ours to look up
        if self.pid == here.pid:
            return None if self.started in (None, here.started) else f"{self.describe()} is gone (PID reused)"
        stat = _stat(self.pid)
        if stat is None:
            if os.path.isdir("/proc/self"):
                return f"{self.describe()} is gone"
            return _gone_without_proc(self)
        state, started = stat
        if state in ("Z", "X"):
            return f"{self.describe()} is gone (killed or exited)"
        if self.started is not None and started != self.started:
            return f"{self.describe()} is gone (its PID now belongs to another process)"
        return None


def _gone_without_proc(owner: Owner) -> str | None:
    """Where there is no ``/proc`` (macOS): only whether the PID exists (a reused PID is not detected)."""
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return f"{owner.describe()} is gone"
    except PermissionError:
        return None
    return None


def _legacy_owner(trial) -> Owner | None:
    """The owner of a trial started before owners were recorded: its ``worker`` attr, ``host:pid``."""
    host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    return Owner(host, int(pid)) if host and pid.isdigit() else None


def owner_attr() -> dict[str, object]:
    """This process as a trial's ``owner`` attr, with its coordinator if it is a worker of ``run --workers``."""
    from sweeps.study.workers import COORDINATOR_VAR

    attr = Owner.me().to_attr()
    coordinator = os.environ.get(COORDINATOR_VAR)
    if coordinator and coordinator == str(os.getppid()):
        attr[COORDINATOR_KEY] = Owner.of(int(coordinator)).to_attr()
    return attr


def claim(study, trial) -> None:
    """Record this process as the owner of ``trial`` (call right after ``ask``, under the trial lock)."""
    study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, owner_attr())


def owner_of(trial) -> Owner | None:
    """The process that runs ``trial``: its ``owner`` attr, else (older trials) its ``worker`` attr."""
    return Owner.from_attr(trial.system_attrs.get(OWNER_ATTR)) or _legacy_owner(trial)


def why_lost(trial) -> str | None:
    """Why the RUNNING ``trial``'s process is provably gone, or None when it may still be running.

    A worker's trial is left to its coordinator while that lives: it sees the worker exit and fails the
    trial with the exit status."""
    owner = owner_of(trial)
    if owner is None:
        return "its process stopped before recording who ran it"
    reason = owner.gone()
    attr = trial.system_attrs.get(OWNER_ATTR)
    coordinator = Owner.from_attr(attr.get(COORDINATOR_KEY)) if isinstance(attr, dict) else None
    if reason is not None and coordinator is not None and coordinator.gone() is None:
        return None
    return reason


def reclaim(
    study, fail_run: Callable[[str, str], None], find_run: Callable[[int], str | None]
) -> list[tuple[int, str]]:
    """Fail the RUNNING trials whose process is provably gone, in both stores, and queue them again.

    Call under the trial lock. ``fail_run(run_id, reason)`` ends a trial's MLflow run FAILED;
    ``find_run(number)`` finds the run of a trial whose process died before recording its id. Returns
    (number, reason) of each trial failed.
    """
    import optuna

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        reason = why_lost(trial)
        if reason is None:
            continue
        reason = f"lost: {reason}"
        storage = study._storage
        try:
            storage.set_trial_user_attr(trial._trial_id, OUTCOME_ATTR, LOST)
            storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, reason)
            # MLflow first: killed between the two, the trial is still RUNNING and the next run does both.
            # A retried trial carries its predecessor's run id until it records its own.
            own = trial.user_attrs.get(RUN_TRIAL_ATTR) == trial.number
            run_id = trial.user_attrs.get(RUN_ID_ATTR) if own else find_run(trial.number)
            if run_id:
                fail_run(run_id, reason)
            storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it ended meanwhile
        _retry(study, trial)
        failed.append((trial.number, reason))
    return failed


def _retry(study, trial) -> None:
    """Queue ``trial``'s setting again, as the heartbeat path does (RetryHeartbeatStaleTrialCallback, at most
    3 retries of a setting, so one that kills its process every time cannot stall the sweep). ``trial`` is
    the snapshot taken while it ran: the copy carries neither the failure nor its owner."""
    import optuna

    queued = copy.deepcopy(trial)
    queued.system_attrs = {k: v for k, v in queued.system_attrs.items() if k != OWNER_ATTR}
    queued.user_attrs = {k: v for k, v in queued.user_attrs.items() if k != WORKER_ATTR}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)(study, queued)
