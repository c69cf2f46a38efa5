"""tracking.run_reads: a sweep's end-of-sweep reads and artifact copies straight from and into an embedded store,
compared with what MLflow's client returns and writes on the same store."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.file_utils import local_file_uri_to_path

import tracking
from tracking import direct_sql, run_reads, run_writes, schema, select

NOW = 1_700_000_000_000
INF = float("inf")
NAN = float("nan")
RUN_INFO = (
    "run_id", "experiment_id", "status", "run_name", "start_time", "end_time", "artifact_uri", "lifecycle_stage",
    "user_id",
)  # fmt: skip


@dataclass
class Store:
    """A store holding a mix of runs written by MLflow's client and by run_writes."""

    client: MlflowClient
    experiments: list[str]  # a file:/// artifact location, a plain path
    parents: list[str]
    trials: list[str]  # active trial runs, of both parents and both experiments
    others: list[str]  # a deleted trial run, a non-trial child run


def _trial_values(i: int) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Metrics (NaN, ±inf, a step logged twice, an int), params (one named like a fixed column), tags."""
    final = [0.5, NAN, INF, -INF, 0.25, 0.125, 0.3, 0.4][i]
    metrics = [
        ("val_cost", 1.0 / (i + 1), NOW + 1, 1),
        ("val_cost", 0.9 / (i + 1), NOW + 2, 2),
        ("val_cost", 0.8 / (i + 1), NOW + 3, 2),  # the same step again, later
        ("val_cost", NAN if i == 1 else 0.7, NOW + 4, 3),
        ("val_cost", INF if i == 2 else 0.6, NOW + 5, 4),
        ("val_cost", 0.55, NOW, 5),  # a later step logged at an earlier time
        ("final_val_cost", final, NOW + 6, 0),
        ("best_val_cost", -INF if i == 4 else 0.1 * i, NOW + 6, 0),
        ("epochs_run", 3, NOW + 6, 0),
    ]
    params = [("lr", str(0.1 * (i + 1))), ("batch_size", str(16 << i)), ("status", "p"), ("flag", str(i % 2 == 0))]
    tags = [(schema.TRIAL_STATE, "complete"), (schema.STUDY_NAME, "s"), ("note", f"n{i}")]
    return metrics, params, tags


def _log(client: MlflowClient, run_id: str, by_mlflow: bool, metrics, params, tags) -> None:
    if by_mlflow:
        client.log_batch(
            run_id,
            metrics=[Metric(*m) for m in metrics],
            params=[Param(*p) for p in params],
            tags=[RunTag(*t) for t in tags],
        )
    else:
        run_writes.for_client(client).log_batch(run_id, metrics, params, tags)


def _create(client: MlflowClient, by_mlflow: bool, experiment: str, name: str, tags: dict, start: int) -> str:
    if by_mlflow:
        return client.create_run(experiment, run_name=name, tags=tags, start_time=start).info.run_id
    return run_writes.for_client(client).create_run(experiment, name, tags, start_time=start).info.run_id


@pytest.fixture
def store(sqlite_uri: str, tmp_path: Path) -> Store:
    client = tracking.make_client(sqlite_uri)
    experiments = [
        client.create_experiment("reads", artifact_location=(tmp_path / "art1").as_uri()),
        client.create_experiment("plain", artifact_location=str(tmp_path / "art2")),
    ]
    sweep = {schema.ROLE: schema.ROLE_SWEEP}
    parents = [
        _create(client, True, experiments[0], "sweep-a", sweep, NOW),
        _create(client, False, experiments[0], "sweep-b", sweep, NOW),
    ]
    trials = []
    for i in range(8):
        by_mlflow = i % 2 == 0
        experiment = experiments[1] if i == 7 else experiments[0]
        tags = {schema.ROLE: schema.ROLE_TRIAL, schema.PARENT_RUN_ID: parents[i // 4], schema.TRIAL_NUMBER: str(i)}
        run_id = _create(client, by_mlflow, experiment, schema.trial_run_name(i), tags, NOW + 10 * (i // 3))
        _log(client, run_id, by_mlflow, *_trial_values(i))
        if i < 6:
            status = ("FINISHED", "KILLED", "FAILED")[i % 3]
            if by_mlflow:
                client.set_terminated(run_id, status, end_time=NOW + 100 + i)
            else:
                run_writes.for_client(client).set_terminated(run_id, status, end_time=NOW + 100 + i)
        trials.append(run_id)
    deleted = _create(client, True, experiments[0], "gone", {schema.ROLE: schema.ROLE_TRIAL}, NOW + 50)
    client.delete_run(deleted)
    confirm = {schema.ROLE: schema.ROLE_CONFIRM, schema.PARENT_RUN_ID: parents[0]}
    other = _create(client, False, experiments[0], "confirm", confirm, NOW + 60)
    _log(client, other, False, [("val_cost", 0.5, NOW, 1)], [("lr", "1")], [])
    with sqlite3.connect(tracking.store.sqlite_path(client.tracking_uri)) as db:
        db.execute("UPDATE runs SET name = '' WHERE run_uuid = ?", (trials[3],))  # named by its tag, as in MLflow
    return Store(client, experiments, parents, trials, [deleted, other])


@contextlib.contextmanager
def _mlflow_only():
    """The reference: what MLflow's client answers, with the direct reads (which tracking.select may use)
    turned off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(direct_sql.SWITCH_VAR, "0")
        yield


def _assert_same_run(ours, theirs) -> None:
    assert isinstance(ours, run_reads.StoredRun) and isinstance(theirs, Run)
    for name in RUN_INFO:
        mine, expected = getattr(ours.info, name), getattr(theirs.info, name)
        assert (mine, type(mine)) == (expected, type(expected)), name
    assert ours.data.params == theirs.data.params
    assert ours.data.tags == theirs.data.tags
    assert repr(ours.data.metrics) == repr(theirs.data.metrics)  # repr: NaN equals NaN, and key order


SCOPES = {
    "one-parent": ([0], 0),
    "other-parent": ([0], 1),
    "experiment": ([0], None),
    "two-experiments": ([0, 1], None),
    "two-experiments-one-parent": ([1, 0], 1),
}


@pytest.mark.parametrize("scope", list(SCOPES))
def test_trial_runs_are_mlflows_in_mlflows_order(store, scope):
    experiments, parent = SCOPES[scope]
    ids = [store.experiments[e] for e in experiments]
    parent_id = None if parent is None else store.parents[parent]
    ours = run_reads.trial_runs(store.client, ids, parent_id)
    with _mlflow_only():
        theirs = select.trial_runs(store.client, ids, parent_id)
    assert ours is not None, "a known store: read directly"
    assert [r.info.run_id for r in ours] == [r.info.run_id for r in theirs]
    assert len(ours) == {"one-parent": 4, "other-parent": 3, "experiment": 7, "two-experiments": 8}.get(scope, 4)
    for a, b in zip(ours, theirs, strict=True):
        _assert_same_run(a, b)
    pd.testing.assert_frame_equal(select.table_from_runs(ours), select.table_from_runs(theirs))
    assert store.others[0] not in {r.info.run_id for r in ours}, "a deleted run is not searched"


def test_a_run_is_read_as_mlflow_gets_it(store):
    for run_id in [*store.parents, *store.trials, *store.others]:
        _assert_same_run(run_reads.get_run(store.client, run_id), store.client.get_run(run_id))
    missing = "0" * 32
    with pytest.raises(MlflowException) as ours:
        run_reads.get_run(store.client, missing)
    with pytest.raises(MlflowException) as theirs:
        store.client.get_run(missing)
    assert (ours.value.error_code, ours.value.message) == (theirs.value.error_code, theirs.value.message)
    assert ours.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert run_reads.get_run(store.client, "not/an id") is None, "MLflow's error for an id it refuses"


@pytest.mark.parametrize("column", ["start_time", "user_id", "status"])
def test_a_run_mlflow_cannot_read_is_left_to_it(store, column):
    with sqlite3.connect(tracking.store.sqlite_path(store.client.tracking_uri)) as db:
        db.execute(f"UPDATE runs SET {column} = NULL WHERE run_uuid = ?", (store.trials[7],))
    with _mlflow_only(), pytest.raises(MlflowException, match=f"{column} cannot be None"):
        select.trial_runs(store.client, store.experiments)
    with pytest.raises(MlflowException, match=f"{column} cannot be None"):
        store.client.get_run(store.trials[7])
    assert run_reads.trial_runs(store.client, store.experiments) is None, "MLflow's error"
    assert run_reads.get_run(store.client, store.trials[7]) is None
    assert len(run_reads.trial_runs(store.client, store.experiments[:1])) == 7, "the others are read"


@pytest.mark.parametrize("key", ["val_cost", "final_val_cost", "absent"])
def test_metric_histories_are_mlflows(store, key):
    run_ids = [*store.trials, *store.others, store.trials[0], "0" * 32]  # a repeated id, a missing run
    ours = run_reads.metric_histories(store.client, run_ids, key)
    assert list(ours) == list(dict.fromkeys(run_ids))
    with _mlflow_only():
        bulk = select._bulk_histories(store.client, run_ids, key)
    for run_id in ours:
        points = [(m.key, m.step, m.timestamp, m.value, m.run_id) for m in ours[run_id]]
        assert all(type(m).__name__ == "MetricWithRunId" for m in bulk[run_id]), "MLflow's"
        assert repr(points) == repr([(m.key, m.step, m.timestamp, m.value, m.run_id) for m in bulk[run_id]])
        history = store.client.get_metric_history(run_id, key)
        assert repr(points) == repr([(m.key, m.step, m.timestamp, m.value, run_id) for m in history])
    if key == "val_cost":
        values = [m.value for m in ours[store.trials[2]]]
        assert values[-1] == 1.7976931348623157e308, "an infinity reads back as MLflow returns it"
        assert len(ours[store.trials[0]]) == 6 and ours["0" * 32] == []


def test_metric_histories_stand_in_for_the_bulk_query(store, monkeypatch):
    """select.metric_curves gives the same curves with the direct histories in place of MLflow's bulk query."""
    numbers = {run_id: i for i, run_id in enumerate(store.trials)}
    with _mlflow_only():
        theirs = select.metric_curves(store.client, store.trials, "val_cost", numbers)
    monkeypatch.setattr(select, "_bulk_histories", run_reads.metric_histories)
    pd.testing.assert_frame_equal(select.metric_curves(store.client, store.trials, "val_cost", numbers), theirs)
    assert len(theirs) == 6 * len(store.trials)


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: whether a folder, its mode bits and, for a file, its bytes and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.stat()
        content = None if path.is_dir() else (path.read_bytes(), info.st_mtime_ns)
        out[str(path.relative_to(root))] = (path.is_dir(), stat.S_IMODE(info.st_mode), content)
    return out


def _source(folder: Path) -> Path:
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "empty").mkdir()
    (folder / "a.txt").write_text("first")
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (folder / "sub" / "deeper" / "c.csv").write_text("x,y\n1,2\n")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o754)
    return folder


@pytest.mark.parametrize("experiment", [0, 1], ids=["file-uri", "plain-path"])
def test_artifacts_are_copied_as_mlflow_copies_them(store, tmp_path, experiment):
    client = store.client
    src = _source(tmp_path / "src")
    runs = [client.create_run(store.experiments[experiment]).info.run_id for _ in range(2)]

    def both(ours, theirs, *args):
        theirs(runs[0], *map(str, args))
        assert ours(client, runs[1], *map(str, args)) is True, "a local artifact folder: copied directly"

    both(run_reads.log_artifacts, client.log_artifacts, src)
    both(run_reads.log_artifacts, client.log_artifacts, src, "summary/nested")
    (src / "a.txt").write_text("second, longer")  # copied again: overwritten
    (src / "sub" / "new.txt").write_text("new")
    both(run_reads.log_artifacts, client.log_artifacts, src, "summary/nested")
    both(run_reads.log_artifact, client.log_artifact, src / "a.txt")
    both(run_reads.log_artifact, client.log_artifact, src / "sub" / "b.bin", "report")
    (src / "sub" / "b.bin").write_bytes(b"replaced")
    both(run_reads.log_artifact, client.log_artifact, src / "sub" / "b.bin", "report")
    both(run_reads.log_artifact, client.log_artifact, src / "sub", "report")  # a folder: report/sub
    both(run_reads.log_artifact, client.log_artifact, src / "sub")

    roots = [Path(local_file_uri_to_path(client.get_run(r).info.artifact_uri)) for r in runs]
    assert _tree(roots[1]) == _tree(roots[0])
    assert (roots[1] / "summary/nested/a.txt").read_text() == "second, longer"
    assert (roots[1] / "report/b.bin").read_bytes() == b"replaced" and (roots[1] / "report/sub/new.txt").exists()
    assert not any(p.name.startswith(run_reads.STAGING_PREFIX) for p in roots[1].rglob("*"))
    for path in (None, "summary/nested", "report", "sub/deeper"):
        listed = [[(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(r, path)] for r in runs]
        assert listed[1] == listed[0] and listed[1], path


def test_an_artifact_path_mlflow_refuses_is_left_to_it(store, tmp_path):
    client = store.client
    src = _source(tmp_path / "src")
    run_id = client.create_run(store.experiments[0]).info.run_id
    root = Path(local_file_uri_to_path(client.get_run(run_id).info.artifact_uri))
    root.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "out").symlink_to(tmp_path / "outside")  # a link leading out of the artifacts
    for path in ("../up", "/abs", "a//b", "./a", "a/", "out", "out/deeper"):
        assert run_reads.log_artifacts(client, run_id, src, path) is False, path
        assert run_reads.log_artifact(client, run_id, src / "a.txt", path) is False, path
        with pytest.raises(MlflowException):
            client.log_artifacts(run_id, str(src), path)
    assert sorted(p.name for p in root.iterdir()) == ["out"] and not any((tmp_path / "outside").iterdir())
    staged = src / f"{run_reads.STAGING_PREFIX}x"
    staged.write_text("x")
    assert run_reads.log_artifact(client, run_id, staged) is False  # a name MLflow keeps for itself
    assert run_reads.log_artifact(client, run_id, src / "missing.txt") is False  # MLflow's error
    assert run_reads.log_artifacts(client, "0" * 32, src) is False  # no such run: MLflow's error
    assert run_reads.log_artifacts(client, "tr-" + "0" * 32, src) is False


@pytest.mark.parametrize("location", ["s3://bucket/prefix", "mlflow-artifacts:/reads", "file:///a%20b", "file-host"])
def test_artifacts_elsewhere_than_a_plain_local_folder_go_through_mlflow(store, tmp_path, location):
    client = store.client
    if location == "file-host":
        location = "file://localhost" + str(tmp_path / "host")  # a host: MLflow's to read
    experiment = client.create_experiment(f"remote-{len(location)}", artifact_location=location)
    run_id = client.create_run(experiment).info.run_id
    src = _source(tmp_path / "src")
    assert run_reads.log_artifacts(client, run_id, src) is False
    assert run_reads.log_artifact(client, run_id, src / "a.txt", "x") is False
    assert run_reads.get_run(client, run_id).info.artifact_uri == client.get_run(run_id).info.artifact_uri


def _all_fall_back(client, store: Store, src: Path) -> None:
    assert run_reads.trial_runs(client, store.experiments, store.parents[0]) is None
    assert run_reads.get_run(client, store.trials[0]) is None
    assert run_reads.metric_histories(client, store.trials, "val_cost") is None
    assert run_reads.log_artifacts(client, store.trials[0], src) is False
    assert run_reads.log_artifact(client, store.trials[0], src / "a.txt") is False


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE alembic_version SET version_num = 'ffffffffffff'",
        "ALTER TABLE latest_metrics ADD COLUMN model_id VARCHAR(32)",
        "ALTER TABLE runs ADD COLUMN note TEXT",
    ],
)
def test_a_store_of_another_schema_is_read_through_mlflow(store, tmp_path, change):
    db = tracking.store.sqlite_path(store.client.tracking_uri)
    other = tmp_path / "other.db"
    shutil.copy(db, other)
    with sqlite3.connect(other) as con:
        con.execute(change)
    client = types.SimpleNamespace(
        tracking_uri=tracking.default_tracking_uri(tmp_path).replace("mlflow.db", "other.db")
    )
    _all_fall_back(client, store, _source(tmp_path / "src"))
    assert not (tmp_path / "art1").exists(), "nothing copied"


def test_reads_fall_back_when_direct_is_off_or_does_not_apply(store, tmp_path, monkeypatch):
    src = _source(tmp_path / "src")
    _all_fall_back(types.SimpleNamespace(tracking_uri="http://127.0.0.1:5000"), store, src)
    assert run_reads.trial_runs(store.client, ["x"], None) is None, "MLflow's error for a bad experiment id"
    assert run_reads.trial_runs(store.client, [], None) is None
    assert run_reads.trial_runs(store.client, store.experiments, "a' OR '1") is None, "MLflow parses that filter"
    assert run_reads.metric_histories(store.client, [1], "val_cost") is None
    monkeypatch.setenv(direct_sql.SWITCH_VAR, "0")
    _all_fall_back(store.client, store, src)
    monkeypatch.setenv(direct_sql.SWITCH_VAR, "1")
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    _all_fall_back(store.client, store, src)
    monkeypatch.delenv("MLFLOW_ENABLE_WORKSPACES")
    with sqlite3.connect(tracking.store.sqlite_path(store.client.tracking_uri)) as db:
        db.execute(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, workspace)"
            " VALUES ('theirs', 'file:///tmp/x', 'active', 'team')"
        )
    _all_fall_back(store.client, store, src)  # another workspace's experiment: MLflow's to refuse
    assert not (tmp_path / "art1").exists(), "nothing copied"


def test_a_busy_store_is_read_once_it_is_free(sqlite_uri, tmp_path, monkeypatch, caplog):
    client = tracking.make_client(sqlite_uri)
    experiment = client.create_experiment("busy", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(experiment, tags={schema.ROLE: schema.ROLE_TRIAL}).info.run_id
    assert run_writes.for_client(client) is not None  # its schema checked while free; no connection yet
    monkeypatch.setattr(run_writes, "BUSY_TIMEOUT_SECONDS", 0.05)  # the connection is made below
    holder = sqlite3.connect(tracking.store.sqlite_path(sqlite_uri), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, past the busy timeout
    release = threading.Timer(0.5, holder.execute, ("ROLLBACK",))
    release.start()
    try:
        with caplog.at_level(logging.WARNING, logger="tracking.mlflow_requests"):
            runs = run_reads.trial_runs(client, [experiment])
    finally:
        release.join()
        holder.close()
    assert [r.info.run_id for r in runs] == [run_id]
    assert "database is locked" in caplog.text, "retried while busy"


def test_the_reads_and_copies_import_no_mlflow(store, tmp_path):
    """A fresh process reads the trial runs, a run and histories, and copies artifacts, without MLflow."""
    src = _source(tmp_path / "src")
    script = (
        "import json, sys, types\n"
        "from tracking import run_reads\n"
        f"client = types.SimpleNamespace(tracking_uri={store.client.tracking_uri!r})\n"
        f"runs = run_reads.trial_runs(client, {store.experiments!r}, {store.parents[0]!r})\n"
        f"run = run_reads.get_run(client, {store.parents[0]!r})\n"
        "histories = run_reads.metric_histories(client, [r.info.run_id for r in runs], 'val_cost')\n"
        f"copied = run_reads.log_artifacts(client, run.info.run_id, {str(src)!r}, 'summary')\n"
        f"copied &= run_reads.log_artifact(client, run.info.run_id, {str(src / 'a.txt')!r}, 'report')\n"
        "print(json.dumps([len(runs), run.info.run_name, sum(map(len, histories.values())), copied,"
        " sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow')]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != direct_sql.SWITCH_VAR}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == [4, "sweep-a", 24, True, []]
    listed = {f.path for f in store.client.list_artifacts(store.parents[0])}
    assert listed == {"summary", "report"}
