"""tracking.run_writes: a run's creation, values and end written straight into SQLite, row for row as MLflow
writes them, and only where that is exact."""

from __future__ import annotations

import math
import multiprocessing
import shutil
import sqlite3
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


def test_the_new_run_is_returned_as_mlflow_returns_it(store):
    client, experiment = store
    made = run_writes.create_run(client, experiment, "trial-0001", {"role": "trial"})
    read = client.get_run(made.info.run_id)
    assert made.info.run_name == read.info.run_name == "trial-0001"
    assert made.info.artifact_uri == read.info.artifact_uri
    assert read.info.artifact_uri.endswith(f"/{made.info.run_id}/artifacts")
    assert (made.info.status, made.info.lifecycle_stage, made.info.experiment_id) == ("RUNNING", "active", experiment)
    assert made.data.tags == read.data.tags == {"role": "trial", "mlflow.runName": "trial-0001"}
    assert made.info.start_time == read.info.start_time and abs(made.info.start_time - time.time() * 1000) < 60_000
    assert not made.data.params and not made.data.metrics and made.inputs.dataset_inputs == []


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
    assert ours == ({"SqliteRuns.create_run", "SqliteRuns.log_batch", "SqliteRuns.set_terminated"} if direct else set())
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
