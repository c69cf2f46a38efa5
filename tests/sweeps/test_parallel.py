"""Scale-out and faults: several workers on one study, SIGKILL mid-trial, SIGINT/SIGTERM then resume.

Embedded stores here; the PostgreSQL + MLflow server versions are in test_distributed.py.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import new_workdir, processes_with, run_cli, start_cli, stop_server_groups
from tests.sweeps.test_cli import child_runs, study

SLOW = [
    "--set",
    "training.epochs=40",
    "--set",
    "dataset.n_samples=3000",
    "--set",
    "model.hidden=[64,64]",
    "--set",
    "search.batch_size.choices=[32]",
]


def wait_until(predicate, timeout=120.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate.__doc__ or predicate}")


def _trials(workdir: Path, name: str = "tiny"):
    if not (workdir / "optuna.journal").exists():
        return []
    try:
        return study(workdir, name).trials
    except KeyError:
        return []


def assert_settled(workdir: Path, name: str, total: int):
    """Exactly ``total`` trials counted, nothing left RUNNING in either store, one run per trial."""
    s = study(workdir, name)
    counted = [t for t in s.trials if t.user_attrs.get("outcome") in ("completed", "pruned", "failed")]
    assert len(counted) == total
    assert not [t for t in s.trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    _, runs = child_runs(workdir, name)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    numbers = [int(r.data.tags["trial_number"]) for r in runs]
    assert sorted(numbers) == sorted(t.number for t in s.trials if t.user_attrs.get("mlflow_run_id"))
    assert len(numbers) == len(set(numbers))
    return s, runs


def test_two_local_workers_share_one_study_and_one_parent_run(tmp_path, tiny_spec, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)
    proc = run_cli(
        "run",
        tiny_spec,
        "--workers",
        "2",
        "--trials",
        "20",
        "--set",
        "training.epochs=2",
        "--workdir",
        wd,
        cwd=tmp_path,
        check=True,
    )
    s, runs = assert_settled(wd, "tiny", 20)
    # The same progress display as one process (issue 10.10): a line per finished trial with the best so far,
    # ending at the total, and the time left once a trial has set the pace.
    lines = [line.split(" · ") for line in proc.stderr.splitlines() if line.startswith("trials ")]
    done = [int(parts[0].split()[1].split("/")[0]) for parts in lines]
    assert done == sorted(set(done)) and done[-1] == 20 and all(parts[0].endswith("/20") for parts in lines)
    best = min(t.value for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert lines[-1][1] == f"best {best:.6g}" and lines[-1][-1].endswith(" left")
    assert len(s.trials) == 20 and len(runs) == 20
    assert len({t.user_attrs["worker"] for t in s.trials}) == 2  # both workers trained
    # Each worker's sampler is reseeded: with the spec's seed both would propose the same settings.
    assert len({tuple(sorted(t.params.items())) for t in s.trials}) == 20
    parent = s.user_attrs["mlflow_parent_run_id"]
    c, _ = child_runs(wd, "tiny")
    for r in runs:
        assert r.data.tags["mlflow.parentRunId"] == parent and r.info.status == "FINISHED"
        assert len(c.get_metric_history(r.info.run_id, "val_cost")) == 2
    assert c.get_run(parent).info.status == "FINISHED"


def test_sigkill_of_a_local_worker_mid_trial_is_retried(tmp_path, tiny_spec, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)
    coordinator = start_cli(
        "run",
        tiny_spec,
        "--workers",
        "2",
        "--trials",
        "4",
        *SLOW,
        "--workdir",
        wd,
        cwd=tmp_path,
        log=tmp_path / "run.log",
    )
    try:

        def a_running_trial():
            """a RUNNING trial with an MLflow run"""
            running = [
                t
                for t in _trials(wd)
                if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("mlflow_run_id")
            ]
            return running[0] if running else None

        victim = wait_until(a_running_trial)
        os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        assert coordinator.wait(300) == 0, (tmp_path / "run.log").read_text()
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
    s, runs = assert_settled(wd, "tiny", 4)
    lost = s.trials[victim.number]
    assert lost.state == optuna.trial.TrialState.FAIL and lost.user_attrs["outcome"] == "lost"
    assert "exited with status -9" in lost.user_attrs["fail_reason"]
    run = {r.info.run_id: r for r in runs}[victim.user_attrs["mlflow_run_id"]]
    assert run.info.status == "FAILED" and "exited with status -9" in run.data.tags["fail_reason"]
    retry = [t for t in s.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retry) == 1 and retry[0].params == victim.params


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_interrupt_records_the_trial_then_rerun_resumes(tmp_path, tiny_spec, template_db, sig, code, name):
    wd = new_workdir(tmp_path / "wd", template_db)
    # Long enough trials (~5 s here) that trial 1 is still training when the signal lands.
    args = ("run", tiny_spec, "--trials", "2", *SLOW, "--set", "training.epochs=200", "--workdir", wd)
    proc = start_cli(*args, cwd=tmp_path, log=tmp_path / "run.log")
    try:

        def second_trial_running():
            """trial 1 RUNNING with an MLflow run"""
            ts = _trials(wd)
            return (
                len(ts) >= 2
                and ts[1].state == optuna.trial.TrialState.RUNNING
                and ts[1].user_attrs.get("mlflow_run_id")
            )

        wait_until(second_trial_running)
        time.sleep(0.3)
        proc.send_signal(sig)
        assert proc.wait(120) == code
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "run.log").read_text()
    assert f"interrupted ({name}); run the same command again to resume" in log and "Traceback" not in log
    s = study(wd, "tiny")
    interrupted = s.trials[1]
    assert interrupted.state == optuna.trial.TrialState.FAIL
    assert interrupted.user_attrs["outcome"] == "interrupted"
    c, runs = child_runs(wd, "tiny")
    run = c.get_run(interrupted.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["fail_reason"] == f"interrupted ({name})"

    run_cli(*args, cwd=tmp_path, check=True)
    s, runs = assert_settled(wd, "tiny", 2)
    assert len(runs) == len(s.trials) == 3  # 2 counted + the interrupted one, each with exactly one run


@pytest.mark.parametrize("nohup", [True, False], ids=["nohup", "terminal"])
def test_sighup_interrupts_a_sweep_unless_it_runs_under_nohup(tmp_path, tiny_spec, template_db, nohup):
    """The terminal closing sends SIGHUP: the sweep records the trial it was training as interrupted and
    exits 129. Started with `nohup` (SIGHUP ignored), the same signal changes nothing and every trial ends."""
    import subprocess

    from tests.conftest import SWEEPS, cli_env

    wd = new_workdir(tmp_path / "wd", template_db)
    args = ["run", str(tiny_spec), "--trials", "2", *SLOW, "--set", "training.epochs=100", "--workdir", str(wd)]
    args.append("--no-report")
    with open(tmp_path / "run.log", "w") as log:
        proc = subprocess.Popen(
            ["nohup", str(SWEEPS), *args] if nohup else [str(SWEEPS), *args],
            cwd=tmp_path,
            env=cli_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:

        def a_trial_running():
            """a trial RUNNING with an MLflow run"""
            running = [t for t in _trials(wd) if t.state == optuna.trial.TrialState.RUNNING]
            return running and running[0].user_attrs.get("mlflow_run_id")

        wait_until(a_trial_running)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(120) == (0 if nohup else 129)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "run.log").read_text()
    s = study(wd, "tiny")
    if nohup:
        assert "interrupted" not in log
        assert [t.state for t in s.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    else:
        assert "interrupted (SIGHUP); run the same command again to resume" in log and "Traceback" not in log
        failed = [t for t in s.trials if t.state == optuna.trial.TrialState.FAIL]
        assert [t.user_attrs["fail_reason"] for t in failed] == ["interrupted (SIGHUP)"]
        assert not [t for t in s.trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_workers_stop_and_record_their_trials_when_the_coordinator_is_sigkilled(tmp_path, tiny_spec, template_db):
    wd = new_workdir(tmp_path / "wd", template_db)
    args = ("run", tiny_spec, "--workers", "2", "--trials", "4", *SLOW, "--set", "training.epochs=400")
    coordinator = start_cli(*args, "--workdir", wd, cwd=tmp_path, log=tmp_path / "run.log")
    try:

        def two_running_trials():
            """both workers training a trial with an MLflow run"""
            ts = [t for t in _trials(wd) if t.state == optuna.trial.TrialState.RUNNING]
            return len(ts) == 2 and all(t.user_attrs.get("mlflow_run_id") for t in ts)

        wait_until(two_running_trials)
        workers = processes_with("--coordinated", str(wd), writers=False)
        assert len(workers) == 2
        coordinator.kill()
        coordinator.wait(30)

        def workers_gone():
            """the orphaned workers exited"""
            return not processes_with("--coordinated", str(wd))

        wait_until(workers_gone, timeout=90)
        s = study(wd, "tiny")
        assert not [t for t in s.trials if t.state == optuna.trial.TrialState.RUNNING]
        stopped = [t for t in s.trials if t.user_attrs.get("outcome") == "interrupted"]
        assert len(stopped) == 2 and all(t.user_attrs["fail_reason"] == "interrupted (SIGTERM)" for t in stopped)
        # Their runs went through the loopback server, which outlives the coordinator for that reason.
        _, runs = child_runs(wd, "tiny")
        closed = {r.info.run_id: r.info.status for r in runs}
        assert [closed[t.user_attrs["mlflow_run_id"]] for t in stopped] == ["FAILED", "FAILED"]
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
        for pid in processes_with("--coordinated", str(wd)):
            os.kill(pid, signal.SIGKILL)
        stop_server_groups(processes_with("mlflow", "server", str(wd)))  # the coordinator's, left running


def test_a_lost_workers_trial_ends_failed_in_mlflow_even_if_its_run_had_closed(tmp_path, tiny_spec, template_db):
    """A worker killed after closing its MLflow run but before telling Optuna: Optuna fails and retries the
    trial, so the run must end FAILED too (it was FINISHED), with the reason."""
    import mlflow

    from sweeps.spec import load_spec
    from sweeps.study.runner import open_study
    from sweeps.study.storage import resolve_stores
    from sweeps.study.trial_lifecycle import RUN_ID_ATTR, WORKER_ATTR
    from sweeps.study.workers import fail_lost_trials

    stores = resolve_stores(tmp_path / "wd", None, None)
    new_workdir(stores.workdir, template_db)
    study = open_study(load_spec(tiny_spec), stores)
    client = mlflow.MlflowClient(stores.tracking_uri)
    run_id = client.create_run(client.create_experiment("tiny")).info.run_id
    client.set_terminated(run_id, status="FINISHED")
    trial = study.ask()
    trial.suggest_float("lr", 0.001, 0.1, log=True)
    trial.set_user_attr(WORKER_ATTR, "host:123")
    trial.set_user_attr(RUN_ID_ATTR, run_id)

    assert fail_lost_trials(study, stores, "host:123", "worker host:123 exited with status -9") == 1
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["fail_reason"] == "worker host:123 exited with status -9"
    assert run.data.tags["trial_state"] == "fail"
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]  # queued again


def test_one_of_many_workers_draws_the_summary_per_count_of_finished_trials(tmp_path):
    """Independent workers all stay until no trial runs (to retry a dead worker's), then leave together:
    one of them draws the parent run's summary, which reads every trial's curves, not all of them."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from sweeps.study.runner import _summary_is_mine
    from sweeps.study.storage import TrialLock, resolve_stores

    stores = resolve_stores(tmp_path / "wd", None, None)
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal")))
    first = optuna.create_study(study_name="s", storage=storage)
    other = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "journal"))))
    lock = TrialLock(stores, "s")
    try:
        assert not _summary_is_mine(first, lock, done=8, running=1)  # trials still running: left to others
        assert _summary_is_mine(first, lock, done=8, running=0)
        assert not _summary_is_mine(other, lock, done=8, running=0)  # another worker, the same count
        assert not _summary_is_mine(first, lock, done=8, running=0)
        assert _summary_is_mine(other, lock, done=10, running=0)  # more finished since: drawn again, once
        assert not _summary_is_mine(first, lock, done=10, running=0)
    finally:
        lock.close()
