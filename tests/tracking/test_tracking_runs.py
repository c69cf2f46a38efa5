"""The run layout against a real SQLite store and a real `mlflow server`: nesting, curves, states, reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracking
from optcore.history import EpochRecord
from tracking import direct_sql, schema, writer

EPOCH_CURVES = ("train_cost", "val_cost", "val_accuracy", "lr", "epoch_seconds")
PARAMS = {"batch_size": 64, "optimizer": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "schedule": "cosine"}


def _history_len(client, run_id: str, key: str) -> int:
    return len(client.get_metric_history(run_id, key))


def test_layout_nests_trials_under_the_sweep(store_uri, run_trial):
    sweep = tracking.start_sweep("layout", tracking_uri=store_uri, tags={"spec_hash": "abc123"})
    run = run_trial(sweep, 7, PARAMS, [0.9, 0.5, 0.4], minibatches_per_epoch=3)
    client = sweep.client

    experiment = client.get_experiment_by_name("layout")
    child = client.get_run(run.run_id)
    assert child.info.experiment_id == experiment.experiment_id == sweep.experiment_id
    assert child.info.run_name == "trial-0007"
    assert child.data.tags[schema.PARENT_RUN_ID] == sweep.run_id
    assert child.data.tags[schema.STUDY_NAME] == "layout"
    assert child.data.tags[schema.TRIAL_NUMBER] == "7"
    assert child.data.tags[schema.TRIAL_STATE] == "complete"
    assert child.data.tags["spec_hash"] == "abc123"  # study-wide tags reach every trial
    assert child.data.tags["dataset"] == "digits"
    assert child.data.tags["version.mlflow"]
    assert child.data.params == {**{k: str(v) for k, v in PARAMS.items()}, "seed": "1007"}
    assert child.info.status == "FINISHED"
    parent = client.get_run(sweep.run_id)
    assert parent.data.tags[schema.ROLE] == schema.ROLE_SWEEP
    assert schema.PARENT_RUN_ID not in parent.data.tags


@pytest.mark.parametrize("via_callback", [True, False], ids=["log_epoch", "finish-only"])
def test_every_curve_has_one_point_per_epoch(store_uri, run_trial, via_callback):
    sweep = tracking.start_sweep("curves", tracking_uri=store_uri)
    run = run_trial(sweep, 0, PARAMS, [0.9, 0.5, 0.4, 0.45], minibatches_per_epoch=3, via_callback=via_callback)
    client = sweep.client
    for key in EPOCH_CURVES:
        points = client.get_metric_history(run.run_id, key)
        assert sorted(m.step for m in points) == [1, 2, 3, 4], key
    assert [m.value for m in sorted(client.get_metric_history(run.run_id, "val_cost"), key=lambda m: m.step)] == [
        0.9,
        0.5,
        0.4,
        0.45,
    ]
    costs = sorted(client.get_metric_history(run.run_id, "minibatch_cost"), key=lambda m: m.step)
    assert [m.step for m in costs] == list(range(1, 13))  # iterations numbered continuously from 1
    assert [m.value for m in costs][:4] == [10.0, 11.0, 12.0, 20.0]
    assert _history_len(client, run.run_id, "minibatch_cost_ewa") == 12
    metrics = client.get_run(run.run_id).data.metrics
    assert metrics["final_val_cost"] == 0.45
    assert metrics["best_val_cost"] == 0.4
    assert metrics["best_epoch"] == 3
    assert metrics["epochs_run"] == 4
    assert metrics["train_seconds"] == 2.0


def test_pruned_trial_is_killed_with_its_partial_curve(store_uri, run_trial):
    sweep = tracking.start_sweep("pruned", tracking_uri=store_uri)
    run = run_trial(sweep, 3, PARAMS, [0.9, 0.8], state="pruned")
    child = sweep.client.get_run(run.run_id)
    assert child.info.status == "KILLED"
    assert child.data.tags[schema.TRIAL_STATE] == "pruned"
    assert child.data.tags[schema.PRUNED_AT_EPOCH] == "2"
    assert _history_len(sweep.client, run.run_id, "val_cost") == 2
    assert child.data.metrics["epochs_run"] == 2


def test_failed_trial_keeps_its_reason(store_uri, run_trial):
    sweep = tracking.start_sweep("failed", tracking_uri=store_uri)
    run = run_trial(sweep, 4, PARAMS, [0.9, 5.0, 80.0], state="FAIL", reason="cost diverged at epoch 4")
    child = sweep.client.get_run(run.run_id)
    assert child.info.status == "FAILED"
    assert child.data.tags[schema.TRIAL_STATE] == "fail"
    assert child.data.tags[schema.FAIL_REASON] == "cost diverged at epoch 4"
    assert _history_len(sweep.client, run.run_id, "val_cost") == 3


def test_unknown_state_lists_the_valid_ones(sqlite_uri, make_history):
    run = tracking.start_sweep("states", tracking_uri=sqlite_uri).trial(0, PARAMS)
    with pytest.raises(ValueError, match="unknown trial state 'done'; valid trial states: complete, "):
        run.finish("done", make_history([0.5]))


def test_resume_reuses_parent_and_trial_runs(store_uri, run_trial, make_history):
    sweep = tracking.start_sweep("resume", tracking_uri=store_uri)
    first = sweep.trial(0, PARAMS, seed=1)
    history = make_history([0.9, 0.7, 0.6, 0.5])
    for i in range(2):  # the process dies after epoch 2, which are in the store
        first.log_epoch(EpochRecord(i + 1, 1.0, history.val_cost[i], 0.5, 0.01, 0.1))
    # (values logged while the writer still starts are held, not written: those would die with the process)
    assert first.flush()
    sweep.finish("KILLED")

    again = tracking.start_sweep("resume", tracking_uri=store_uri, existing_run_id=sweep.run_id)
    assert again.run_id == sweep.run_id
    assert sweep.client.get_run(sweep.run_id).info.status == "RUNNING"
    by_id = again.trial(0, PARAMS, seed=1, existing_run_id=first.run_id)
    by_tags = again.trial(0, PARAMS, seed=1)  # the id was never saved: found by study name + trial number
    assert by_id.run_id == by_tags.run_id == first.run_id
    assert by_id.logged_epochs == 2
    for i, e in enumerate(history.epoch):  # the retried trial logs every epoch again
        by_id.log_epoch(EpochRecord(e, 1.0, history.val_cost[i], 0.5, 0.01, 0.1))
    by_id.finish("complete", history)
    by_id.finish("complete", history)  # a second finish changes nothing

    client = sweep.client
    assert len(client.search_runs([sweep.experiment_id])) == 2  # one parent, one trial
    assert sorted(m.step for m in client.get_metric_history(first.run_id, "val_cost")) == [1, 2, 3, 4]
    assert _history_len(client, first.run_id, "final_val_cost") == 1
    assert client.get_run(first.run_id).info.status == "FINISHED"


def test_reused_run_refuses_changed_params(sqlite_uri):
    sweep = tracking.start_sweep("conflict", tracking_uri=sqlite_uri)
    run = sweep.trial(1, PARAMS, seed=5)
    with pytest.raises(tracking.TrackingError, match=r"batch_size='64' \(now '128'\)"):
        sweep.trial(1, {**PARAMS, "batch_size": 128}, seed=5, existing_run_id=run.run_id)
    with pytest.raises(tracking.TrackingError, match="is trial '1'"):
        sweep.trial(2, PARAMS, existing_run_id=run.run_id)


def test_unknown_parent_id_starts_a_new_parent(sqlite_uri):
    sweep = tracking.start_sweep("lost", tracking_uri=sqlite_uri, existing_run_id="0" * 32)
    assert sweep.run_id != "0" * 32
    other = tracking.start_sweep("other", tracking_uri=sqlite_uri)
    with pytest.raises(tracking.TrackingError, match="is not the sweep run of experiment 'lost'"):
        tracking.start_sweep("lost", tracking_uri=sqlite_uri, existing_run_id=other.run_id)


def _writer_done() -> None:
    """Wait until the writer process has written what it was sent (log_epoch does not wait for the store)."""
    shared = writer.shared_writer(start=False)
    if shared is not None:
        shared.barrier()


def test_flush_every_n_epochs_buffers_between_flushes(sqlite_uri):
    run = tracking.start_sweep("flush", tracking_uri=sqlite_uri).trial(0, PARAMS, flush_every=2)
    client = run.client
    run.log_epoch(EpochRecord(1, 1.0, 0.9, 0.5, 0.01, 0.1), [3.0, 2.0])
    _writer_done()
    assert client.get_metric_history(run.run_id, "val_cost") == []
    run.log_epoch(EpochRecord(2, 0.9, 0.8, 0.6, 0.01, 0.1), [1.5, 1.0])
    _writer_done()
    assert _history_len(client, run.run_id, "val_cost") == 2
    assert _history_len(client, run.run_id, "minibatch_cost") == 4
    with pytest.raises(ValueError, match="flush_every"):
        tracking.start_sweep("flush", tracking_uri=sqlite_uri).trial(1, PARAMS, flush_every=0)


def test_embedded_store_puts_artifacts_in_mlartifacts(sqlite_uri, tmp_path):
    sweep = tracking.start_sweep("where", tracking_uri=sqlite_uri)
    experiment = sweep.client.get_experiment(sweep.experiment_id)
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()


@pytest.mark.parametrize("direct", ["1", "0"], ids=["direct-sqlite", "through-mlflow"])
def test_a_new_trial_whose_create_answer_was_lost_gets_one_run(sqlite_uri, monkeypatch, direct):
    """new=True skips the lookup on the first attempt only: when the store made the run but the answer was
    lost (a transient error after the fact), the retry finds that run instead of making a second one."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    from tracking import run_writes

    monkeypatch.setenv(direct_sql.SWITCH_VAR, direct)
    sweep = tracking.start_sweep("lost-answer", tracking_uri=sqlite_uri)
    real_create, calls = run_writes.create_run, []

    def create_then_lose_the_answer(*args, **kwargs):
        calls.append(args)
        run = real_create(*args, **kwargs)
        if len(calls) == 1:
            raise MlflowException("connection reset", error_code=TEMPORARILY_UNAVAILABLE)
        return run

    monkeypatch.setattr(run_writes, "create_run", create_then_lose_the_answer)
    run = sweep.trial(3, {"lr": 0.1}, new=True)
    assert len(calls) == 1  # the retry found the run made by the first attempt
    found = sweep.client.search_runs([sweep.experiment_id], "tags.trial_number = '3'")
    assert [r.info.run_id for r in found] == [run.run_id]
    monkeypatch.setattr(run_writes, "create_run", real_create)
    other = sweep.trial(4, {"lr": 0.1}, new=True)
    assert other.run_id != run.run_id


def test_log_record_puts_params_tags_metrics_and_files_on_the_parent(sqlite_uri, tmp_path):
    sweep = tracking.start_sweep("record", tracking_uri=sqlite_uri)
    folder = tmp_path / "report"
    (folder / "plots").mkdir(parents=True)
    (folder / "report.json").write_text("{}")
    (folder / "plots" / "a.png").write_bytes(b"png")
    metrics = [("mean_cost", 0.25, 64), ("mean_cost", 0.5, 128), ("p", None, 64), ("chosen", 64, 0)]
    sweep.log_record(
        params={"sizes": "64,128", "alpha": None}, tags={"verdict": "tied", "runner_up": None}, metrics=metrics
    )
    sweep.log_record(artifacts=folder, what="the report")
    client = sweep.client
    data = client.get_run(sweep.run_id).data
    assert data.params["sizes"] == "64,128" and "alpha" not in data.params  # None values are left out
    assert data.tags["verdict"] == "tied" and "runner_up" not in data.tags
    assert sorted((m.step, m.value) for m in client.get_metric_history(sweep.run_id, "mean_cost")) == [
        (64, 0.25),
        (128, 0.5),
    ]
    assert client.get_metric_history(sweep.run_id, "chosen")[0].value == 64.0
    assert "p" not in data.metrics
    assert sorted(a.path for a in client.list_artifacts(sweep.run_id)) == ["plots", "report.json"]


@pytest.mark.parametrize("outcome", [schema.Outcome.COMPLETE, schema.Outcome.FAIL])
def test_end_closes_a_run_with_the_callers_own_values(sqlite_uri, outcome):
    sweep = tracking.start_sweep("end", tracking_uri=sqlite_uri)
    run = sweep.trial(0, {"batch_size": 64}, tags={schema.RUN_NAME: "target-0"})
    run.end(outcome, metrics=[("val_cost", 0.5, 10), ("val_cost", 0.4, 20), ("steps", 20.0, 0)], tags={"note": 1})
    run.end(schema.Outcome.PRUNED)  # a second call does nothing
    got = sweep.client.get_run(run.run_id)
    assert got.info.run_name == "target-0"
    assert got.info.status == outcome.status
    assert got.data.tags[schema.TRIAL_STATE] == outcome.value and got.data.tags["note"] == "1"
    assert [m.step for m in sweep.client.get_metric_history(run.run_id, "val_cost")] == [10, 20]


def test_outcomes_parse_every_spelling_and_name_their_status():
    assert schema.Outcome.parse("Completed") is schema.Outcome.parse("COMPLETE") is schema.Outcome.COMPLETE
    assert schema.Outcome.parse("failed") is schema.Outcome.FAIL
    assert schema.Outcome.parse(schema.Outcome.PRUNED) is schema.Outcome.PRUNED
    assert [o.status for o in schema.Outcome] == ["FINISHED", "KILLED", "FAILED"]
    with pytest.raises(ValueError, match="unknown trial state 'running'"):
        schema.Outcome.parse("running")


def test_parent_and_trial_helpers_read_and_change_runs_by_id(sqlite_uri, run_trial, tmp_path):
    """What sweeps asks of a store without a client of its own: tags on and off the parent, a file uploaded,
    a run read back, a curve in step order, a trial failed (once), the sweep runs of an experiment."""
    sweep = tracking.start_sweep("helpers", tracking_uri=sqlite_uri)
    run = run_trial(sweep, 0, PARAMS, [0.9, 0.5, 0.4])
    sweep.set_tags({"stop_rule": "max_minutes", "stopped_after_trials": 3})
    tags = tracking.read_run(sqlite_uri, sweep.run_id).data.tags
    assert (tags["stop_rule"], tags["stopped_after_trials"]) == ("max_minutes", "3")
    sweep.delete_tags(["stop_rule", "never_set"])
    assert "stop_rule" not in tracking.read_run(sqlite_uri, sweep.run_id).data.tags
    (tmp_path / "front.png").write_bytes(b"png")
    sweep.log_file(tmp_path / "front.png", "plots")
    copy = tracking.download_artifact(sqlite_uri, sweep.run_id, "plots/front.png", tmp_path / "back")
    assert Path(copy).read_bytes() == b"png"
    assert tracking.metric_values(sqlite_uri, run.run_id, "val_cost") == [0.9, 0.5, 0.4]
    assert tracking.metric_values(sqlite_uri, run.run_id, "never_logged") == []

    tracking.fail_trial_run(sqlite_uri, run.run_id, "lost")  # a FINISHED run is overwritten
    failed = tracking.read_run(sqlite_uri, run.run_id)
    assert failed.info.status == "FAILED"
    assert (failed.data.tags[schema.TRIAL_STATE], failed.data.tags[schema.FAIL_REASON]) == ("fail", "lost")
    tracking.fail_trial_run(sqlite_uri, run.run_id, "again")  # already FAILED: its reason stays
    assert tracking.read_run(sqlite_uri, run.run_id).data.tags[schema.FAIL_REASON] == "lost"

    assert [r.info.run_id for r in tracking.sweep_runs(sqlite_uri, "helpers")] == [sweep.run_id]
    assert tracking.sweep_runs(sqlite_uri, "no-such-sweep") == []
