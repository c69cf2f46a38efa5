"""tracking.run_writes: a run's creation, values and end written straight into SQLite, row for row as MLflow
writes them, and only where that is exact."""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import tracking
from tracking import direct_sql, run_writes
from tracking.mlflow_requests import is_transient

NOW = 1_700_000_000_000


@pytest.fixture
def store(sqlite_uri: str) -> tuple[MlflowClient, str]:
    """A client of a fresh embedded store and the id of an experiment in it."""
    client = tracking.make_client(sqlite_uri)
    return client, client.create_experiment("writes")


def _db(client: MlflowClient) -> Path:
    return tracking.store.sqlite_path(client.tracking_uri)


def _rows(client: MlflowClient, run_id: str) -> dict[str, list[tuple]]:
    """Every row of the run in the tables written here, without the run id, sorted."""
    with sqlite3.connect(_db(client)) as db:
        out = {
            table: sorted(db.execute(f"SELECT {cols} FROM {table} WHERE run_uuid = ?", (run_id,)).fetchall())
            for table, cols in {
                "metrics": "key, value, timestamp, step, is_nan",
                "latest_metrics": "key, value, timestamp, step, is_nan",
                "params": "key, value",
                "tags": "key, value",
            }.items()
        }
        out["runs"] = db.execute(
            "SELECT name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time,"
            " source_version, lifecycle_stage, experiment_id, deleted_time, artifact_uri FROM runs WHERE run_uuid = ?",
            (run_id,),
        ).fetchall()
    out["runs"] = [(*row[:-1], row[-1].replace(run_id, "<id>")) for row in out["runs"]]
    return out


# Batches that exercise what MLflow's log_batch decides: NaN and infinities, a key logged several times in a
# batch and across batches (the latest value is the greatest (step, timestamp, value)), a point logged
# twice, a later batch with an older step, tags overwritten, and the run's name changed through its tag.
BATCHES = [
    dict(
        metrics=[
            ("cost", 0.5, NOW, 1),
            ("cost", 0.25, NOW + 5, 2),
            ("cost", 0.75, NOW + 5, 2),  # same step and time: the greater value is the latest
            ("acc", float("nan"), NOW, 1),
            ("big", float("inf"), NOW, 0),
            ("small", float("-inf"), NOW, 0),
            ("count", 3, NOW, 0),  # an int
        ],
        params=[("lr", "0.01"), ("batch_size", "64")],
        tags=[("state", "running"), ("note", "a"), ("note", "b")],
    ),
    dict(
        metrics=[("cost", 0.5, NOW, 1), ("cost", 0.1, NOW + 9, 1), ("acc", 0.9, NOW + 1, 1)],
        params=[("lr", "0.01"), ("seed", "7")],
        tags=[("state", "complete"), ("mlflow.runName", "renamed")],
    ),
    dict(metrics=[("acc", 0.95, NOW + 2, 3), ("cost", float("nan"), NOW + 20, 3)], params=[], tags=[]),
]


def test_a_run_written_directly_holds_the_rows_mlflow_writes(store):
    client, experiment = store
    direct = run_writes.for_client(client)
    assert direct is not None, "the installed MLflow's schema should be one the direct writes know"
    tags = {"role": "trial", "mlflow.user": "someone", "trial_number": "3"}
    by_mlflow = client.create_run(experiment, run_name="trial-0003", tags=tags, start_time=NOW)
    by_us = direct.create_run(experiment, "trial-0003", tags, start_time=NOW)
    for batch in BATCHES:
        client.log_batch(
            by_mlflow.info.run_id,
            metrics=[tracking_metric(*m) for m in batch["metrics"]],
            params=[tracking_param(*p) for p in batch["params"]],
            tags=[tracking_tag(*t) for t in batch["tags"]],
        )
        direct.log_batch(by_us.info.run_id, batch["metrics"], batch["params"], batch["tags"])
    client.set_terminated(by_mlflow.info.run_id, "KILLED", end_time=NOW + 100)
    direct.set_terminated(by_us.info.run_id, "KILLED", end_time=NOW + 100)

    ours, theirs = _rows(client, by_us.info.run_id), _rows(client, by_mlflow.info.run_id)
    assert ours == theirs
    assert ours["runs"][0][0] == "renamed" and ours["runs"][0][5] == "KILLED"
    assert ("cost", 0.75, NOW + 5, 2, 0) in ours["metrics"]  # every point kept, once
    assert len(ours["metrics"]) == len(set(ours["metrics"])) == 11
    # And as MLflow reads them back: the run, its latest values and every curve.
    a, b = client.get_run(by_us.info.run_id), client.get_run(by_mlflow.info.run_id)
    assert a.data.params == b.data.params and a.data.tags == b.data.tags
    assert a.data.metrics.keys() == b.data.metrics.keys()
    for key, value in b.data.metrics.items():
        assert a.data.metrics[key] == value or (math.isnan(value) and math.isnan(a.data.metrics[key]))
        history = [(m.step, m.timestamp, m.value) for m in client.get_metric_history(by_us.info.run_id, key)]
        expected = [(m.step, m.timestamp, m.value) for m in client.get_metric_history(by_mlflow.info.run_id, key)]
        assert sorted(map(repr, history)) == sorted(map(repr, expected))  # repr: NaN equals NaN
    info = (a.info.status, a.info.end_time, a.info.run_name, a.info.user_id)
    assert info == ("KILLED", NOW + 100, "renamed", "someone")


RUN_INFO = (
    "run_id", "experiment_id", "status", "run_name", "start_time", "end_time", "artifact_uri", "lifecycle_stage",
    "user_id",
)  # fmt: skip


def test_the_new_run_is_returned_as_mlflow_returns_it(store):
    client, experiment = store
    made = run_writes.create_run(client, experiment, "trial-0001", {"role": "trial"})
    assert isinstance(made, run_writes.CreatedRun), "written directly"
    read = client.get_run(made.info.run_id)
    theirs = client.create_run(experiment, run_name="trial-0002", tags={"role": "trial"})
    for name in RUN_INFO:
        assert getattr(made.info, name) == getattr(read.info, name), name
        assert type(getattr(made.info, name)) is type(getattr(theirs.info, name)), name
    assert read.info.artifact_uri.endswith(f"/{made.info.run_id}/artifacts")
    assert (made.info.status, made.info.lifecycle_stage, made.info.experiment_id) == ("RUNNING", "active", experiment)
    assert made.data.tags == read.data.tags == {"role": "trial", "mlflow.runName": "trial-0001"}
    assert made.data.params == read.data.params == {} and made.data.metrics == read.data.metrics == {}
    assert list(made.inputs.dataset_inputs) == list(read.inputs.dataset_inputs) == []
    assert abs(made.info.start_time - time.time() * 1000) < 60_000


# Artifact locations: absolute paths and file:/// URIs (computed here), and what MLflow computes (a host, a
# query, a fragment, a relative path, another scheme, a path urllib would read a host in).
LOCATIONS = {
    "file:///abs/dir/mlartifacts/1": True,
    "file:///abs/dir/": True,
    "file:///": True,
    "file:///a b/%20c;d/[e]/é/x:y@z": True,
    "/abs/dir": True,
    "/abs/dir/": True,
    "/a;b/c d/é": True,
    "file:////double/slash": False,
    "file://localhost/abs": False,
    "file:/abs/one-slash": False,
    "file:///abs?x=1": False,
    "file:///abs#frag": False,
    "//host/path": False,
    "relative/dir": False,
    "s3://bucket/prefix?versionId=3": False,
    "mlflow-artifacts:/1": False,
    "/abs/tab\tin": False,
}


@pytest.mark.parametrize("location", list(LOCATIONS))
def test_the_artifact_uri_is_mlflows(location):
    from mlflow.utils.uri import append_to_uri_path

    run_id = "0123456789abcdef0123456789abcdef"
    assert bool(run_writes._SIMPLE_LOCATION.fullmatch(location)) is LOCATIONS[location]
    assert run_writes._artifact_uri(location, run_id) == append_to_uri_path(location, run_id, "artifacts")


def test_a_run_experiment_and_inputs_written_directly_import_no_mlflow(tmp_path, template_db):
    """A fresh process that finds its experiment, creates a run, logs values and dataset inputs and ends the
    run on an embedded store never imports MLflow (~2.4 s)."""
    shutil.copy(template_db, tmp_path / "mlflow.db")
    uri = tracking.default_tracking_uri(tmp_path)
    script = (
        "import sys, types\n"
        "import numpy as np\n"
        "from tracking import run_writes\n"
        "from tracking.datasets import describe_dataset, log_dataset_inputs\n"
        f"client = types.SimpleNamespace(tracking_uri={uri!r})\n"
        f"experiment = run_writes.experiment_id(client, 'fresh', {(tmp_path / 'mlartifacts').as_uri()!r})\n"
        "run = run_writes.create_run(client, experiment, 'r', {'role': 'trial'})\n"
        "run_writes.log_values(client, run.info.run_id, [('cost', 1.0, 1, 0)], [('lr', '0.1')], [('t', 'v')])\n"
        "records = describe_dataset('d', 'abc', {'n': 1}, {'training': (np.zeros((2, 2)), np.zeros((2, 1)))})\n"
        "log_dataset_inputs(client, run.info.run_id, records)\n"
        "run_writes.set_terminated(client, run.info.run_id, 'FINISHED')\n"
        "print(run.info.run_id, sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (direct_sql.SWITCH_VAR, *run_writes.ACTIVE_MODEL_VARS)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id, imported = done.stdout.split(" ", 1)
    assert imported.strip() == "[]"
    client = tracking.make_client(uri)
    run = client.get_run(run_id)
    assert (run.info.status, run.data.params, run.data.metrics) == ("FINISHED", {"lr": "0.1"}, {"cost": 1.0})
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["d-train"]
    assert client.get_experiment(run.info.experiment_id).name == "fresh"


def test_a_param_keeps_its_value_as_mlflow_insists(store):
    client, experiment = store
    direct = run_writes.for_client(client)
    run_id = direct.create_run(experiment, "r", {}).info.run_id
    direct.log_batch(run_id, params=[("lr", "0.1")])
    direct.log_batch(run_id, params=[("lr", "0.1")])  # the same value again is fine
    with pytest.raises(MlflowException, match="Changing param values is not allowed") as refused:
        direct.log_batch(run_id, metrics=[("cost", 1.0, NOW, 1)], params=[("lr", "0.2")], tags=[("t", "v")])
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE" and not is_transient(refused.value)
    assert _rows(client, run_id)["metrics"] == [] and _rows(client, run_id)["tags"] == [("mlflow.runName", "r")]
    assert client.get_run(run_id).data.params == {"lr": "0.1"}


def test_a_runs_last_values_and_its_end_go_in_one_transaction(store):
    """``log_values(..., end=)`` on an embedded store: the rows MLflow's log_batch and set_terminated write, in
    one commit (a trial's end waits for one durable commit, not two); refused values end nothing."""
    client, experiment = store
    direct = run_writes.for_client(client)
    runs = {name: direct.create_run(experiment, "trial", {}, start_time=NOW).info.run_id for name in "ab"}
    batch = BATCHES[0]
    direct.log_batch(runs["a"], batch["metrics"], batch["params"], batch["tags"])
    direct.set_terminated(runs["a"], "FAILED", end_time=NOW + 100)
    commits = []
    connection = direct._connect()
    connection.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    try:
        ended = run_writes.log_values(client, runs["b"], batch["metrics"], batch["params"], batch["tags"], end="FAILED")
    finally:
        connection.set_trace_callback(None)
    assert ended and len(commits) == 1
    a, b = _rows(client, runs["a"]), _rows(client, runs["b"])
    assert b["runs"][0][7] >= NOW  # ended now
    b["runs"][0] = (*b["runs"][0][:7], NOW + 100, *b["runs"][0][8:])
    assert a == b and b["runs"][0][5] == "FAILED"
    # Values the store refuses (a param may not change) leave the run as it was: RUNNING.
    run_id = direct.create_run(experiment, "c", {}).info.run_id
    run_writes.log_values(client, run_id, params=[("lr", "0.1")])
    with pytest.raises(MlflowException, match="Changing param values"):
        run_writes.log_values(client, run_id, [("cost", 1.0, NOW, 1)], [("lr", "0.2")], end="FINISHED")
    assert client.get_run(run_id).info.status == "RUNNING" and _rows(client, run_id)["metrics"] == []
    # Nothing to log but the end: still one transaction, and the run ends.
    assert run_writes.log_values(client, run_id, end="KILLED") and client.get_run(run_id).info.status == "KILLED"


def test_a_missing_or_deleted_run_is_refused_with_mlflows_error(store):
    client, experiment = store
    direct = run_writes.for_client(client)
    with pytest.raises(MlflowException, match="not found") as missing:
        direct.log_batch("0" * 32, metrics=[("cost", 1.0, NOW, 1)])
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    run_id = direct.create_run(experiment, "r", {}).info.run_id
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        direct.set_terminated(run_id, "FINISHED")
    client.delete_experiment(experiment)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        direct.create_run(experiment, "r2", {})


def test_tags_deleted_directly_leave_the_rows_mlflow_leaves(store):
    """``delete_tags`` against ``MlflowClient.delete_tag`` on twin runs: the same rows left, the same error for
    a tag the run lacks (and then none deleted), and nothing asked, nothing done."""
    client, experiment = store
    tags = [("best.lr", "0.1"), ("best.momentum", "0.9"), ("keep", "x")]
    runs = []
    for name in ("direct", "mlflow"):
        run_id = run_writes.create_run(client, experiment, name, {}).info.run_id
        run_writes.log_values(client, run_id, tags=tags)
        runs.append(run_id)
    direct, through = runs
    run_writes.delete_tags(client, direct, ["best.lr", "best.momentum"])
    for key in ("best.lr", "best.momentum"):
        client.delete_tag(through, key)
    assert _rows(client, direct)["tags"] == [("keep", "x"), ("mlflow.runName", "direct")]
    assert _rows(client, through)["tags"] == [("keep", "x"), ("mlflow.runName", "mlflow")]
    with pytest.raises(MlflowException) as theirs:
        client.delete_tag(through, "best.lr")
    with pytest.raises(MlflowException) as ours:
        run_writes.for_client(client).delete_tags(direct, ["keep", "best.lr"])
    assert str(ours.value) == str(theirs.value).replace(through, direct)
    assert ours.value.error_code == theirs.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert ("keep", "x") in _rows(client, direct)["tags"]  # one transaction: none deleted
    run_writes.delete_tags(client, direct, [])


def test_values_mlflow_would_refuse_or_change_go_through_mlflow(store):
    client, experiment = store
    run_id = run_writes.create_run(client, experiment, "r", {}).info.run_id
    with pytest.raises(MlflowException, match="Invalid value") as bad_name:
        run_writes.log_values(client, run_id, metrics=[("cost?", 1.0, NOW, 1)])
    with pytest.raises(MlflowException) as twice:
        run_writes.log_values(client, run_id, params=[("p", "1"), ("p", "2")])
    for refused in (bad_name, twice):
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert _rows(client, run_id)["metrics"] == _rows(client, run_id)["params"] == []
    run_writes.log_values(client, run_id, params=[("long", "x" * 6001)])  # MLflow cuts it (and says so)
    assert client.get_run(run_id).data.params == {"long": "x" * 6000}
    assert not run_writes._plain([("cost", True, NOW, 1)], [], [])  # MLflow refuses a bool
    assert not run_writes._plain([("cost", 1.0, NOW, 1.5)], [], [])  # and a fractional step
    assert not run_writes._plain([], [], [("../up", "v")])  # a name that normalises to another
    assert run_writes._plain([("a/b c:d-e.f_g", 1.0, NOW, 1)], [("k", "v")], [("t", "v")])


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE alembic_version SET version_num = 'ffffffffffff'",
        "ALTER TABLE metrics ADD COLUMN model_id VARCHAR(32)",
        "ALTER TABLE tags ADD COLUMN note TEXT",
    ],
)
def test_a_store_of_another_schema_is_written_through_mlflow(sqlite_uri, change):
    client = tracking.make_client(sqlite_uri)  # creates the store
    with sqlite3.connect(_db(client)) as db:
        db.execute(change)
    other = sqlite_uri.replace("mlflow.db", "other.db")
    shutil.copy(_db(client), tracking.store.sqlite_path(other))
    assert run_writes.for_uri(other) is None
    assert run_writes.for_uri(sqlite_uri.replace("mlflow.db", "missing.db")) is None
    assert run_writes.for_uri("http://127.0.0.1:5000") is None


def test_the_direct_writes_can_be_turned_off(store, monkeypatch):
    client, _ = store
    assert run_writes.for_client(client) is not None
    monkeypatch.setenv(direct_sql.SWITCH_VAR, "0")
    assert run_writes.for_client(client) is None


def test_a_busy_store_is_a_transient_failure(tmp_path, template_db, monkeypatch):
    shutil.copy(template_db, tmp_path / "mlflow.db")
    uri = tracking.default_tracking_uri(tmp_path)
    client = tracking.make_client(uri)
    experiment = client.create_experiment("busy")
    monkeypatch.setattr(run_writes, "BUSY_TIMEOUT_SECONDS", 0.05)
    direct = run_writes.SqliteRuns(_db(client))
    run_id = direct.create_run(experiment, "r", {}).info.run_id
    holder = sqlite3.connect(_db(client), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, past the busy timeout
    try:
        with pytest.raises(MlflowException, match="database is locked") as busy:
            direct.log_batch(run_id, metrics=[("cost", 1.0, NOW, 1)])
        assert busy.value.error_code == "TEMPORARILY_UNAVAILABLE" and is_transient(busy.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    direct.log_batch(run_id, metrics=[("cost", 1.0, NOW, 1)])  # the connection is usable again
    assert _rows(client, run_id)["metrics"] == [("cost", 1.0, NOW, 1, 0)]


def _write_in_child(db: str, run_id: str) -> None:
    writer = run_writes._writers[Path(db)][1]  # the parent's object, with its connection
    writer.log_batch(run_id, metrics=[("cost", 2.0, NOW, 2)])


def test_a_forked_child_writes_through_its_own_connection(store):
    client, experiment = store
    direct = run_writes.for_client(client)
    run_id = direct.create_run(experiment, "r", {}).info.run_id  # the parent's connection is open
    parent_connection = direct._connection
    child = multiprocessing.get_context("fork").Process(target=_write_in_child, args=(str(_db(client)), run_id))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    direct.log_batch(run_id, metrics=[("cost", 3.0, NOW, 3)])  # and the parent's still works
    assert direct._connection is parent_connection
    assert [row[3] for row in _rows(client, run_id)["metrics"]] == [2, 3]


def tracking_metric(key, value, timestamp, step):
    from mlflow.entities import Metric

    return Metric(key, value, timestamp, step)


def tracking_param(key, value):
    from mlflow.entities import Param

    return Param(key, value)


def tracking_tag(key, value):
    from mlflow.entities import RunTag

    return RunTag(key, value)


@pytest.mark.parametrize("direct", [True, False], ids=["direct-sqlite", "through-mlflow"])
def test_a_sweeps_trial_runs_are_written_directly_unless_turned_off(sqlite_uri, run_trial, monkeypatch, direct):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    monkeypatch.setenv("TRACKING_WRITER", "off")  # the writes in this process, where they can be counted
    monkeypatch.setenv(direct_sql.SWITCH_VAR, "1" if direct else "0")
    sweep = tracking.start_sweep("counted", tracking_uri=sqlite_uri)
    calls: list[str] = []
    for owner, names in (
        (run_writes.SqliteRuns, ("create_run", "log_batch", "set_terminated")),
        (SqlAlchemyStore, ("create_run", "log_batch", "update_run_info")),
    ):
        for name in names:
            real = getattr(owner, name)

            def counted(self, *args, _real=real, _name=f"{owner.__name__}.{name}", **kwargs):
                calls.append(_name)
                return _real(self, *args, **kwargs)

            monkeypatch.setattr(owner, name, counted)
    run = run_trial(sweep, 0, {"lr": 0.1, "batch_size": 64}, [0.5, 0.4, 0.3], minibatches_per_epoch=4)
    ours = {c for c in calls if c.startswith("SqliteRuns")}
    # Directly, the run's last values and its end go in one transaction (log_batch's).
    assert ours == ({"SqliteRuns.create_run", "SqliteRuns.log_batch"} if direct else set())
    assert not any(c.startswith("SqlAlchemyStore") for c in calls) if direct else len(calls) >= 3
    held = sweep.client.get_run(run.run_id)
    assert held.info.status == "FINISHED" and held.data.params["lr"] == "0.1"
    assert held.data.metrics["val_cost"] == 0.3 and held.data.metrics["final_val_cost"] == 0.3
    assert len(sweep.client.get_metric_history(run.run_id, "minibatch_cost")) == 12


def test_a_store_removed_and_created_again_is_written_where_it_now_is(tmp_path, template_db):
    """A work folder removed between two sweeps of one Python session: the new store gets the writes."""
    uri = tracking.default_tracking_uri(tmp_path)
    shutil.copy(template_db, tmp_path / "mlflow.db")
    client = tracking.make_client(uri)
    direct = run_writes.for_uri(uri)
    first = direct.create_run(client.create_experiment("first"), "r", {}).info.run_id
    (tmp_path / "mlflow.db").unlink()
    with pytest.raises(MlflowException, match="is gone") as gone:
        direct.log_batch(first, metrics=[("cost", 1.0, NOW, 1)])
    assert not (tmp_path / "mlflow.db").exists(), "no empty file made in its place"
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    shutil.copy(template_db, tmp_path / "mlflow.db")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage)"
            " VALUES (7, 'again', 'file:///tmp/a', 'active')"
        )
    again = run_writes.for_uri(uri).create_run("7", "r", {}).info.run_id
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("SELECT run_uuid FROM runs").fetchall() == [(again,)]


def test_what_mlflow_would_do_more_with_goes_through_mlflow(store, monkeypatch):
    """An empty run name (MLflow makes one up, or keeps the old), metrics while an MLflow model is active
    (MLflow links them to it), a step beyond 64 bits; and an empty batch does nothing, as in MLflow."""
    import mlflow

    client, experiment = store
    made = run_writes.create_run(client, experiment, "", {})
    assert made.info.run_name and client.get_run(made.info.run_id).info.run_name == made.info.run_name
    run_id = made.info.run_id
    run_writes.log_values(client, run_id, tags=[("mlflow.runName", "")])
    assert client.get_run(run_id).info.run_name == made.info.run_name
    model = client.create_logged_model(experiment)
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_active_model(model_id=model.model_id)
    try:
        run_writes.log_values(client, run_id, metrics=[("cost", 1.0, NOW, 1)])
    finally:
        mlflow.clear_active_model()
        mlflow.set_tracking_uri(None)
    with sqlite3.connect(_db(client)) as db:
        linked = db.execute(
            "SELECT metric_name, metric_value FROM logged_model_metrics WHERE run_id = ?", (run_id,)
        ).fetchall()
    assert linked == [("cost", 1.0)]
    assert not run_writes._plain([("cost", 1.0, NOW, 2**63)], [], [])
    client.delete_run(run_id)
    run_writes.log_values(client, run_id)  # nothing to log: no error, as MLflow
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert run_writes.for_client(client) is None  # workspaces scope runs: MLflow's business


def test_a_store_replaced_by_one_of_another_schema_is_checked_again(tmp_path, template_db):
    uri = tracking.default_tracking_uri(tmp_path)
    shutil.copy(template_db, tmp_path / "mlflow.db")
    assert run_writes.for_uri(uri) is not None
    other = tmp_path / "other.db"
    shutil.copy(template_db, other)
    with sqlite3.connect(other) as db:
        db.execute("ALTER TABLE metrics ADD COLUMN model_id VARCHAR(32)")
    other.replace(tmp_path / "mlflow.db")
    assert run_writes.for_uri(uri) is None


# --- the experiment ---------------------------------------------------------------------------------------


def _experiment_rows(uri: str, name: str) -> tuple[list[tuple], list[tuple]]:
    """The experiment's row (without its times) and its tags' rows, and whether its times are equal."""
    with sqlite3.connect(tracking.store.sqlite_path(uri)) as db:
        rows = db.execute(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, workspace,"
            " creation_time = last_update_time, typeof(creation_time) FROM experiments WHERE name = ?",
            (name,),
        ).fetchall()
        tags = db.execute(
            "SELECT key, value FROM experiment_tags WHERE experiment_id IN"
            " (SELECT experiment_id FROM experiments WHERE name = ?)",
            (name,),
        ).fetchall()
    return rows, tags


@pytest.mark.parametrize("where", ["file-uri", "path"])
def test_an_experiment_created_directly_is_the_one_mlflow_creates(tmp_path, template_db, where):
    uris = []
    for side in ("mlflow", "direct"):
        (tmp_path / side).mkdir()
        shutil.copy(template_db, tmp_path / side / "mlflow.db")
        uris.append(tracking.default_tracking_uri(tmp_path / side))
    location = (tmp_path / "shared artifacts").as_uri() if where == "file-uri" else str(tmp_path / "shared")
    theirs, ours = (tracking.make_client(uri) for uri in uris)
    assert run_writes.for_client(ours) is not None
    their_id = theirs.create_experiment("sweep one", artifact_location=location)
    before = time.time() * 1000
    our_id = run_writes.experiment_id(ours, "sweep one", location)
    assert our_id == their_id == "1"
    assert _experiment_rows(uris[1], "sweep one") == _experiment_rows(uris[0], "sweep one")
    assert _experiment_rows(uris[1], "sweep one")[0][0][-2:] == (1, "integer")
    a, b = ours.get_experiment_by_name("sweep one"), theirs.get_experiment_by_name("sweep one")
    times = ("creation_time", "last_update_time")
    assert {k: v for k, v in dict(a).items() if k not in times} == {k: v for k, v in dict(b).items() if k not in times}
    assert a.creation_time == a.last_update_time and abs(a.creation_time - before) < 60_000
    # Found again, as MLflow finds it; the location given then is not the experiment's business any more.
    assert run_writes.experiment_id(ours, "sweep one", "/elsewhere") == our_id
    run = run_writes.create_run(ours, our_id, "r", {})
    assert run.info.artifact_uri == ours.get_run(run.info.run_id).info.artifact_uri
    assert run.info.artifact_uri == f"{location}/{run.info.run_id}/artifacts"


def test_a_deleted_experiment_is_refused_as_get_or_create_experiment_refuses_it(store, monkeypatch):
    client, experiment = store
    client.delete_experiment(experiment)
    location = "file:///tmp/anywhere"
    with pytest.raises(tracking.TrackingError) as direct:
        run_writes.experiment_id(client, "writes", location)
    monkeypatch.setenv(direct_sql.SWITCH_VAR, "0")
    with pytest.raises(tracking.TrackingError) as by_mlflow:
        tracking.get_or_create_experiment(client, "writes", location)
    assert str(direct.value) == str(by_mlflow.value) and f"--experiment-id {experiment}" in str(direct.value)


def test_an_experiment_mlflow_must_create_is_left_to_it(store, monkeypatch):
    """No location (MLflow picks one), a relative one (MLflow makes it absolute), a name MLflow refuses, a
    store with another workspace's experiments, or of another schema, or direct writes off: None."""
    client, _ = store
    location = "file:///tmp/anywhere"
    assert run_writes.experiment_id(client, "new", None) is None
    assert run_writes.experiment_id(client, "new", "relative/dir") is None
    assert run_writes.experiment_id(client, "", location) is None
    assert run_writes.experiment_id(client, "x" * 501, location) is None
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH", "10")
    assert run_writes.experiment_id(client, "new", location) is None
    monkeypatch.delenv("MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH")
    monkeypatch.setenv(direct_sql.SWITCH_VAR, "0")
    assert run_writes.experiment_id(client, "new", location) is None
    monkeypatch.delenv(direct_sql.SWITCH_VAR)
    with sqlite3.connect(_db(client)) as db:
        db.execute("UPDATE experiments SET workspace = 'team' WHERE name = 'writes'")
    assert run_writes.experiment_id(client, "new", location) is None
    with sqlite3.connect(_db(client)) as db:
        assert db.execute("SELECT count(*) FROM experiments WHERE name = 'new'").fetchone() == (0,)


def test_a_store_whose_experiments_differ_is_not_written_directly(tmp_path, template_db):
    shutil.copy(template_db, tmp_path / "mlflow.db")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("ALTER TABLE experiments ADD COLUMN owner TEXT")
    client = tracking.make_client(tracking.default_tracking_uri(tmp_path))
    assert run_writes.for_client(client) is None
    assert run_writes.experiment_id(client, "new", "file:///tmp/anywhere") is None


def _race_for_experiment(uri: str, start, ids) -> None:
    import types

    start.wait()
    ids.put(run_writes.experiment_id(types.SimpleNamespace(tracking_uri=uri), "raced", "file:///tmp/raced"))


def test_processes_racing_to_create_an_experiment_get_one(sqlite_uri):
    context = multiprocessing.get_context("fork")
    start, ids = context.Barrier(4), context.Queue()
    racers = [context.Process(target=_race_for_experiment, args=(sqlite_uri, start, ids)) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    assert [racer.exitcode for racer in racers] == [0] * 4
    got = {ids.get(timeout=10) for _ in racers}
    with sqlite3.connect(tracking.store.sqlite_path(sqlite_uri)) as db:
        held = db.execute("SELECT experiment_id FROM experiments WHERE name = 'raced'").fetchall()
    assert len(held) == 1 and got == {str(held[0][0])}


# --- dataset inputs -----------------------------------------------------------------------------------------


def _records() -> list:
    """Dataset inputs as a sweep logs them, an input without schema or profile, and an input of a name and
    digest given twice (MLflow keeps the first)."""
    import numpy as np

    from tracking.datasets import DatasetRecord, describe_dataset

    rng = np.random.default_rng(0)
    splits = {"training": (rng.normal(size=(8, 2)), rng.normal(size=(8, 1))), "validation": (np.ones((3, 2)), None)}
    described = describe_dataset("moons", "0123456789abcdef", {"name": "moons"}, splits)
    bare = DatasetRecord("bare", "d1", "code", '{"tags": {}}', None, None, "training")
    again = DatasetRecord("bare", "d1", "code", '{"tags": {"other": "1"}}', None, None, "validation")
    return [*described, bare, again]


def _input_rows(client: MlflowClient, run_id: str) -> list[tuple]:
    """The run's inputs: the dataset's row, the edge's and the tags, without ids but checked to be uuids."""
    with sqlite3.connect(_db(client)) as db:
        rows = db.execute(
            "SELECT d.name, d.digest, d.dataset_source_type, d.dataset_source, d.dataset_schema, d.dataset_profile,"
            " length(d.dataset_uuid), i.source_type, i.destination_type, i.step, typeof(i.step), length(i.input_uuid),"
            " (SELECT group_concat(t.name || '=' || t.value, ';') FROM input_tags t WHERE t.input_uuid = i.input_uuid)"
            " FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id"
            " WHERE i.destination_id = ? AND d.experiment_id = (SELECT experiment_id FROM runs WHERE run_uuid = ?)",
            (run_id, run_id),
        ).fetchall()
    return sorted(rows, key=repr)


def _counts(client: MlflowClient) -> tuple[int, int, int]:
    with sqlite3.connect(_db(client)) as db:
        return tuple(
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("datasets", "inputs", "input_tags")
        )


def _read_inputs(client: MlflowClient, run_id: str) -> list[tuple]:
    """The run's dataset inputs as MLflow reads them back."""
    return sorted(
        (
            (i.dataset.name, i.dataset.digest, i.dataset.source_type, i.dataset.source, i.dataset.schema),
            i.dataset.profile,
            sorted((t.key, t.value) for t in i.tags),
        )
        for i in client.get_run(run_id).inputs.dataset_inputs
    )


def test_dataset_inputs_written_directly_are_the_rows_mlflow_writes(store):
    client, experiment = store
    records = _records()
    other = client.create_experiment("by mlflow")  # datasets belong to an experiment: one each
    theirs = client.create_run(other, run_name="r").info.run_id
    client.log_inputs(theirs, [r.entity() for r in records])
    ours = run_writes.create_run(client, experiment, "r", {}).info.run_id
    assert run_writes.log_inputs(client, ours, records) is True
    assert _input_rows(client, ours) == _input_rows(client, theirs)
    assert len(_input_rows(client, ours)) == 3 and _input_rows(client, ours)[0][6:12] == (
        32,
        "DATASET",
        "RUN",
        0,
        "integer",
        32,
    )
    assert _read_inputs(client, ours) == _read_inputs(client, theirs)
    assert ("bare", "d1", "code", '{"tags": {}}', None) in [i[0] for i in _read_inputs(client, ours)]


def test_inputs_logged_again_add_nothing_and_a_second_run_reuses_the_datasets(store):
    client, experiment = store
    records = _records()
    first = run_writes.create_run(client, experiment, "first", {}).info.run_id
    run_writes.log_inputs(client, first, records)
    counts = _counts(client)
    assert counts == (3, 3, 3)
    run_writes.log_inputs(client, first, records)
    changed = [r if r.name != "bare" else type(r)(*[*r.__dict__.values()][:6], "validation") for r in records]
    run_writes.log_inputs(client, first, changed)  # an input held already keeps its tags, as in MLflow
    assert _counts(client) == counts
    assert ("training",) in {tuple(v for k, v in i[2]) for i in _read_inputs(client, first) if i[0][0] == "bare"}
    second = run_writes.create_run(client, experiment, "second", {}).info.run_id
    run_writes.log_inputs(client, second, records)
    assert _counts(client) == (3, 6, 6)
    assert _input_rows(client, second) == _input_rows(client, first)
    # And MLflow, logging them to a third run, finds the same datasets and the direct writer finds its inputs.
    third = client.create_run(experiment, run_name="third").info.run_id
    client.log_inputs(third, [r.entity() for r in records])
    run_writes.log_inputs(client, third, records)
    assert _counts(client) == (3, 9, 9)


def test_inputs_of_a_missing_or_deleted_run_are_refused_as_mlflow_refuses_them(store):
    client, experiment = store
    records = _records()
    run_id = run_writes.create_run(client, experiment, "r", {}).info.run_id
    client.delete_run(run_id)
    for missing in ("0" * 32, run_id):
        with pytest.raises(MlflowException) as direct:
            run_writes.log_inputs(client, missing, records)
        with pytest.raises(MlflowException) as by_mlflow:
            client.log_inputs(missing, [r.entity() for r in records])
        assert (str(direct.value), direct.value.error_code) == (str(by_mlflow.value), by_mlflow.value.error_code)
    assert _counts(client) == (0, 0, 0)


def test_inputs_go_through_mlflow_where_direct_writes_do_not_apply(store, monkeypatch):
    """Direct writes off, a value MLflow refuses (it says what is wrong), a store of another schema."""
    from tracking.datasets import DatasetRecord, log_dataset_inputs

    client, experiment = store
    run_id = run_writes.create_run(client, experiment, "r", {}).info.run_id
    direct_calls = []
    real = run_writes.SqliteRuns.log_inputs
    monkeypatch.setattr(run_writes.SqliteRuns, "log_inputs", lambda *a: direct_calls.append(a) or real(*a))
    too_long = DatasetRecord("d", "x" * 37, "code", "{}", None, None, "training")
    with pytest.raises(MlflowException, match="digest"):
        log_dataset_inputs(client, run_id, [too_long])
    monkeypatch.setenv(direct_sql.SWITCH_VAR, "0")
    assert run_writes.log_inputs(client, run_id, _records()) is False
    log_dataset_inputs(client, run_id, _records())
    assert direct_calls == [] and len(_read_inputs(client, run_id)) == 3
    monkeypatch.delenv(direct_sql.SWITCH_VAR)
    log_dataset_inputs(client, run_id, _records())
    assert len(direct_calls) == 1 and _counts(client) == (3, 3, 3)
    with sqlite3.connect(_db(client)) as db:
        db.execute("ALTER TABLE inputs ADD COLUMN note TEXT")
    copy = tracking.default_tracking_uri(Path(_db(client)).parent / "copy")
    (Path(_db(client)).parent / "copy").mkdir()
    shutil.copy(_db(client), tracking.store.sqlite_path(copy))
    assert run_writes.for_uri(copy) is None


def test_an_active_model_is_not_waited_for_while_mlflow_is_still_loading(monkeypatch):
    """In the tracking writer, MLflow loads in a thread while trials' values are written: asking MLflow's
    fluent API for an active model then would wait for that import (seconds). While its module is still
    initialising, only MLflow's environment variables can name one (nobody has set one in this process)."""
    import importlib.machinery
    import types

    loading = types.ModuleType("mlflow.tracking.fluent")
    loading.__spec__ = importlib.machinery.ModuleSpec("mlflow.tracking.fluent", None)
    loading.__spec__._initializing = True
    monkeypatch.setitem(sys.modules, "mlflow.tracking.fluent", loading)
    for name in run_writes.ACTIVE_MODEL_VARS:
        monkeypatch.delenv(name, raising=False)
    assert run_writes._active_model() is False
    monkeypatch.setenv("MLFLOW_ACTIVE_MODEL_ID", "m-123")
    assert run_writes._active_model() is True
