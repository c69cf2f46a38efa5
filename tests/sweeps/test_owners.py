"""Trials of a killed `sweeps run` on the embedded store: failed in both stores and queued again by the next run
(sweeps.study.owners), with real processes, real signals and real files."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import optuna

from sweeps.study.owners import Owner
from tests.conftest import new_workdir, run_cli, start_cli
from tests.sweeps.test_cli import child_runs, study
from tests.sweeps.test_parallel import SLOW, _trials, assert_settled, wait_until


def test_this_process_is_alive_and_a_killed_one_is_gone():
    me = Owner.me()
    assert me.gone() is None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = Owner(me.host, child.pid, *_start_boot_ns(child.pid))
        assert owner.gone() is None
        # The same PID started at another time is another process (the PID was reused).
        assert "PID now belongs to another process" in Owner(me.host, child.pid, "1", me.boot, me.namespace).gone()
        child.send_signal(signal.SIGKILL)
        wait_until(lambda: owner.gone())  # a zombie (not yet reaped) already counts as gone
        child.wait()
        assert f"process {child.pid} on {socket.gethostname()} is gone" in owner.gone()
    finally:
        child.kill()
        child.wait()


def test_owners_elsewhere_are_left_alone_and_a_restart_is_proof():
    me = Owner.me()
    assert Owner("another-host", 1, "0", "other-boot", me.namespace).gone() is None
    assert Owner(me.host, 1, "0", me.boot, "pid:[1]").gone() is None  # another container with our host name
    assert "has restarted since" in Owner(me.host, me.pid, me.started, "an-earlier-boot", me.namespace).gone()


def _start_boot_ns(pid: int) -> tuple[str, str | None, str | None]:
    from sweeps.study.owners import _machine, _stat

    return (_stat(pid)[1], *_machine())


def test_sigkill_mid_trial_then_rerun_fails_and_retries_the_orphans(tmp_path, tiny_spec, template_db):
    """Before owners, the killed trial stayed RUNNING in both stores and the rerun stopped short of the total.

    A process killed between `ask` and recording its owner (both under the trial lock) leaves a RUNNING trial
    with no owner; it is provably orphaned too, since a live asker would still hold the lock. The test makes
    one with `ask` from here."""
    wd = new_workdir(tmp_path / "wd", template_db)
    # Long enough (~2 s a trial) that the poll below sees trial 0 running: at 25 epochs it could finish
    # between two polls once training got faster, and the test waited for a state it had missed.
    args = ("run", tiny_spec, "--trials", "2", *SLOW, "--set", "training.epochs=100", "--workdir", wd)
    proc = start_cli(*args, cwd=tmp_path, log=tmp_path / "run.log")
    try:

        def running_with_a_run():
            """trial 0 RUNNING with an MLflow run"""
            ts = _trials(wd)
            return ts and ts[0].state == optuna.trial.TrialState.RUNNING and ts[0].user_attrs.get("mlflow_run_id")

        wait_until(running_with_a_run)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    victim = study(wd, "tiny").trials[0]
    assert victim.system_attrs["owner"]["pid"] == proc.pid  # recorded when the trial started
    ownerless = study(wd, "tiny").ask()

    rerun = run_cli(*args, cwd=tmp_path, check=True)
    s, runs = assert_settled(wd, "tiny", 2)
    assert s.trials[ownerless.number].user_attrs["fail_reason"] == (
        "lost: its process stopped before recording who ran it"
    )
    lost = s.trials[0]
    reason = f"lost: process {proc.pid} on {socket.gethostname()} is gone"
    assert lost.state == optuna.trial.TrialState.FAIL and lost.user_attrs["outcome"] == "lost"
    assert lost.user_attrs["fail_reason"] == reason
    assert f"trial 0 was left RUNNING ({reason})" in rerun.stderr
    run = {r.info.run_id: r for r in runs}[victim.user_attrs["mlflow_run_id"]]
    assert run.info.status == "FAILED" and run.data.tags["fail_reason"] == reason
    retry = [t for t in s.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].params == victim.params and retry[0].user_attrs["outcome"] != "lost"
    assert retry[0].system_attrs["owner"]["pid"] != proc.pid
    c, _ = child_runs(wd, "tiny")
    assert c.get_run(s.user_attrs["mlflow_parent_run_id"]).info.status == "FINISHED"


def test_a_workers_trial_is_left_to_its_coordinator_while_that_lives():
    """The coordinator of `--workers` fails a dead worker's trial with its exit status; others keep off."""
    from sweeps.study.owners import why_lost

    me = Owner.me()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    worker = Owner(me.host, dead.pid, "1", me.boot, me.namespace).to_attr()

    def trial(coordinator):
        attr = worker | ({"coordinator": coordinator.to_attr()} if coordinator else {})
        return optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, system_attrs={"owner": attr})

    assert why_lost(trial(me)) is None
    assert "is gone" in why_lost(trial(Owner(me.host, dead.pid, "1", me.boot, me.namespace)))
    assert "is gone" in why_lost(trial(None))


def test_a_run_left_running_under_a_failed_trial_is_ended_by_the_next_run(tmp_path, tiny_spec, template_db):
    """A worker killed between failing a stale trial in Optuna and failing its run in MLflow leaves the run
    RUNNING under a FAIL trial; the next `sweeps run` of the sweep ends it FAILED, with the trial's reason."""
    from tracking import schema

    wd = new_workdir(tmp_path / "wd", template_db)
    args = ("run", tiny_spec, "--set", "training.epochs=1", "--workdir", wd, "--quiet")
    run_cli(*args, "--trials", "2", cwd=tmp_path, check=True)
    # What that kill leaves, made by hand in both stores: a trial failed as lost, its run still RUNNING.
    s = study(wd, "tiny")
    trial = s.ask()
    reason = f"lost: worker elsewhere:1 stopped beating (trial {trial.number})"
    s._storage.set_trial_user_attr(trial._trial_id, "outcome", "lost")
    s._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
    s._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    c, runs = child_runs(wd, "tiny")
    tags = {k: runs[0].data.tags[k] for k in (schema.PARENT_RUN_ID, schema.ROLE, schema.STUDY_NAME)}
    orphan = c.create_run(runs[0].info.experiment_id, tags={**tags, schema.TRIAL_NUMBER: str(trial.number)})
    assert c.get_run(orphan.info.run_id).info.status == "RUNNING"

    run_cli(*args, "--trials", "3", cwd=tmp_path, check=True)
    ended = c.get_run(orphan.info.run_id)
    assert ended.info.status == "FAILED" and ended.data.tags[schema.FAIL_REASON] == reason
    others = [r for r in child_runs(wd, "tiny")[1] if r.info.run_id != orphan.info.run_id]
    assert [r.info.status for r in others] == ["FINISHED"] * 3  # the live trials' runs untouched
