"""Many machines' path on one machine: PostgreSQL Optuna storage shared by `sweeps worker` processes and a
real `mlflow server` with a PostgreSQL backend store, both on 127.0.0.1; fresh databases per test."""

from __future__ import annotations

import datetime
import os
import signal

import mlflow
import optuna
import pytest

from tests.conftest import admin_connection as _admin
from tests.conftest import requires_postgres, retire_experiments, run_cli, start_cli
from tests.sweeps.test_parallel import SLOW, wait_until

pytestmark = [requires_postgres, pytest.mark.postgres]


@pytest.fixture
def mlflow_server(shared_mlflow_server):
    """The shared server, as new to each test: the sweeps' experiments (all named after the spec, ``tiny``) are
    renamed out of the way afterwards, so the next test's sweep starts a new experiment of the same name."""
    yield shared_mlflow_server
    retire_experiments(shared_mlflow_server)


def rdb_study(url: str, name: str) -> optuna.Study:
    from sweeps.study.storage import sqlalchemy_url

    return optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(sqlalchemy_url(url)))


def server_runs(server, name: str):
    c = mlflow.MlflowClient(server.url)
    exp = c.get_experiment_by_name(name)
    return c, c.search_runs([exp.experiment_id], filter_string="tags.role = 'trial'", max_results=1000)


def assert_settled(url: str, server, total: int):
    s = rdb_study(url, "tiny")
    counted = [t for t in s.trials if t.user_attrs.get("outcome") in ("completed", "pruned", "failed")]
    assert len(counted) == total
    assert not [t for t in s.trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    c, runs = server_runs(server, "tiny")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    numbers = [int(r.data.tags["trial_number"]) for r in runs]
    assert len(numbers) == len(set(numbers)) == len([t for t in s.trials if t.user_attrs.get("mlflow_run_id")])
    return s, c, runs


def test_workers_started_together_on_a_fresh_database(tmp_path, tiny_spec, fresh_db, mlflow_server):
    """Two workers start together on a new database and share 3 trials of ~1.2 s: long enough that a worker
    starting a second or two after the other (a loaded machine) still claims one before the other has taken
    them all. The one left with nothing to claim while the other's last trial runs stays for it (it could
    die and be retried), and leaves when it ends: not a heartbeat interval later (30 s here)."""
    url = fresh_db("optuna")
    env = {"SWEEPS_STORAGE": url, "SWEEPS_TRACKING_URI": mlflow_server.url, "SWEEPS_HEARTBEAT_SECONDS": "30"}
    epochs = 100
    common = (
        "worker",
        tiny_spec,
        "--trials",
        "3",
        *SLOW,
        "--set",
        f"training.epochs={epochs}",
        "--workdir",
        tmp_path / "wd",
    )
    workers = [start_cli(*common, cwd=tmp_path, env=env, log=tmp_path / f"w{i}.log") for i in range(2)]
    for i, w in enumerate(workers):
        assert w.wait(300) == 0, (tmp_path / f"w{i}.log").read_text()
    left = datetime.datetime.now()  # both gone by now: an upper bound on when the waiting one left
    s, c, runs = assert_settled(url, mlflow_server, 3)
    assert len(s.trials) == 3 and len(runs) == 3
    assert {t.system_attrs["owner"]["pid"] for t in s.trials} == {w.pid for w in workers}  # both trained
    last_trial_ended = max(t.datetime_complete for t in s.trials)
    # Waiting out the interval would leave ~30 s after the last trial; the parent's summary takes a few.
    assert (left - last_trial_ended).total_seconds() < 15, (left, last_trial_ended)
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert parents == {s.user_attrs["mlflow_parent_run_id"]}
    for r in runs:
        assert len(c.get_metric_history(r.info.run_id, "val_cost")) == epochs
    # the storage URL is recorded without secrets and the workers never wrote the embedded stores
    assert not (tmp_path / "wd" / "optuna.journal").exists() and not (tmp_path / "wd" / "mlflow.db").exists()
    for w in range(2):
        assert "Traceback" not in (tmp_path / f"w{w}.log").read_text()


def test_sigkilled_worker_is_failed_by_heartbeat_and_retried(tmp_path, tiny_spec, fresh_db, mlflow_server):
    url = fresh_db("optuna")
    env = {
        "SWEEPS_STORAGE": url,
        "SWEEPS_TRACKING_URI": mlflow_server.url,
        "SWEEPS_HEARTBEAT_SECONDS": "1",
        "SWEEPS_GRACE_SECONDS": "3",
    }
    common = ("worker", tiny_spec, "--trials", "3", *SLOW, "--workdir", tmp_path / "wd")
    first = start_cli(*common, cwd=tmp_path, env=env, log=tmp_path / "first.log")
    try:

        def a_running_trial():
            """a RUNNING trial with an MLflow run in PostgreSQL, started less than a second ago"""
            try:
                ts = rdb_study(url, "tiny").trials
            except Exception:  # the study may not exist yet
                return None
            # Just started: a trial seen near its end could complete before the kill lands (under load).
            running = [
                t
                for t in ts
                if t.state == optuna.trial.TrialState.RUNNING
                and t.user_attrs.get("mlflow_run_id")
                and datetime.datetime.now() - t.datetime_start < datetime.timedelta(seconds=1)
            ]
            return running[0] if running else None

        victim = wait_until(a_running_trial, timeout=180, interval=0.1)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    killed = rdb_study(url, "tiny").trials[victim.number]
    assert killed.state == optuna.trial.TrialState.RUNNING, "the trial ended before the kill: nothing to retry"
    second = run_cli(*common, cwd=tmp_path, env=env, timeout=300)
    assert second.returncode == 0, second.stderr
    s, c, _runs = assert_settled(url, mlflow_server, 3)
    stale = s.trials[victim.number]
    assert stale.state == optuna.trial.TrialState.FAIL
    assert stale.user_attrs["outcome"] == "lost" and "no heartbeat" in stale.user_attrs["fail_reason"]  # before: none
    run = c.get_run(victim.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "no heartbeat" in run.data.tags["fail_reason"]
    retried = [t for t in s.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].params == victim.params
    assert retried[0].state != optuna.trial.TrialState.RUNNING
    assert retried[0].user_attrs.get("fail_reason", "") != stale.user_attrs["fail_reason"]  # its own, if any


def test_password_never_reaches_mlflow(tmp_path, tiny_spec, fresh_db, mlflow_server):
    url = fresh_db("optuna")
    with _admin() as conn:
        conn.execute("DROP ROLE IF EXISTS optsweep_pw")
        conn.execute("CREATE ROLE optsweep_pw LOGIN PASSWORD 's3cr3t-pw'")
        conn.execute(f'GRANT ALL ON DATABASE "{url.rsplit("/", 1)[1]}" TO optsweep_pw')
        conn.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" OWNER TO optsweep_pw')
    host_db = url.split("@", 1)[1]
    secret_url = f"postgresql://optsweep_pw:s3cr3t-pw@{host_db}"
    try:
        proc = run_cli(
            "run",
            tiny_spec,
            "--trials",
            "1",
            "--set",
            "training.epochs=1",
            "--storage",
            secret_url,
            "--tracking-uri",
            mlflow_server.url,
            "--workdir",
            tmp_path / "wd",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert "s3cr3t-pw" not in proc.stdout + proc.stderr
        c, runs = server_runs(mlflow_server, "tiny")
        parent = c.get_run(runs[0].data.tags["mlflow.parentRunId"])
        for r in [*runs, parent]:
            text = repr(r.data.params) + repr(r.data.tags)
            assert "s3cr3t-pw" not in text
        assert "***" in parent.data.tags.get("optuna_storage", "")
        root = mlflow_server.artifacts_dir  # every artifact the server holds, this sweep's among them
        for f in root.rglob("*"):
            if f.is_file() and f.suffix in (".yaml", ".csv", ".json", ".txt"):
                assert "s3cr3t-pw" not in f.read_text(errors="ignore"), f
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            conn.execute("DROP ROLE IF EXISTS optsweep_pw")
