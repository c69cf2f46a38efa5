"""The selection API on a store with known contents."""

from __future__ import annotations

import pandas as pd
import pytest

import tracking


@pytest.fixture
def known_store(sqlite_uri, run_trial) -> str:
    """Experiment ``known``: trials 0-4 with final val costs 0.5, 0.3, 0.3 (tie), 0.1 (pruned), failed."""
    sweep = tracking.start_sweep("known", tracking_uri=sqlite_uri)
    run_trial(sweep, 2, {"batch_size": 128, "optimizer": "adam", "lr": 0.01, "nesterov": True}, [0.6, 0.3])
    run_trial(sweep, 0, {"batch_size": 32, "optimizer": "adam", "lr": 0.02, "nesterov": False}, [0.7, 0.5])
    run_trial(sweep, 1, {"batch_size": 64, "optimizer": "sgd", "lr": 0.05, "nesterov": True}, [0.8, 0.3])
    run_trial(sweep, 3, {"batch_size": 16, "optimizer": "sgd", "lr": 0.1, "nesterov": True}, [0.1], state="pruned")
    run_trial(sweep, 4, {"batch_size": 8, "optimizer": "sgd", "lr": 1.0, "nesterov": False}, [9.0], state="failed")
    tracking.start_sweep("empty", tracking_uri=sqlite_uri)
    return sqlite_uri


def test_runs_table_has_one_typed_row_per_trial(known_store):
    table = tracking.runs_table("known", tracking_uri=known_store)
    assert list(table["trial_number"]) == [0, 1, 2, 3, 4]
    assert list(table["state"]) == ["complete", "complete", "complete", "pruned", "fail"]
    assert list(table["status"]) == ["FINISHED", "FINISHED", "FINISHED", "KILLED", "FAILED"]
    assert list(table["final_val_cost"]) == [0.5, 0.3, 0.3, 0.1, 9.0]
    assert list(table["epochs_run"]) == [2, 2, 2, 1, 1]
    assert list(table["batch_size"]) == [32, 64, 128, 16, 8]
    assert table["batch_size"].dtype.kind == "i" and table["lr"].dtype.kind == "f"
    assert list(table["nesterov"]) == [False, True, True, True, False]
    assert list(table["seed"]) == [1000, 1001, 1002, 1003, 1004]
    assert table["run_id"].is_unique and table["parent_run_id"].nunique() == 1


def test_best_run_picks_the_lowest_finished_trial_with_ties_to_the_lower_number(known_store):
    best = tracking.best_run("known", tracking_uri=known_store)
    assert (best["trial_number"], best["final_val_cost"], best["batch_size"]) == (1, 0.3, 64)
    assert tracking.best_run("known", tracking_uri=known_store)["run_id"] == best["run_id"]  # deterministic
    worst = tracking.best_run("known", metric="final_val_cost", tracking_uri=known_store, direction="maximize")
    assert worst["trial_number"] == 0


def test_best_run_errors_are_for_people(known_store):
    with pytest.raises(tracking.NoFinishedTrial, match="no FINISHED trial with metric 'final_val_cost' among 0"):
        tracking.best_run("empty", tracking_uri=known_store)
    with pytest.raises(tracking.TrackingError, match=r"no MLflow experiment named 'nope'.*known"):
        tracking.best_run("nope", tracking_uri=known_store)
    with pytest.raises(tracking.TrackingError, match="no trial has metric 'val_loss'"):
        tracking.best_run("known", metric="val_loss", tracking_uri=known_store)
    with pytest.raises(ValueError, match="direction must be one of minimize, maximize"):
        tracking.best_run("known", tracking_uri=known_store, direction="up")


def test_best_run_without_finished_trials_counts_what_there_is(sqlite_uri, run_trial):
    sweep = tracking.start_sweep("all-pruned", tracking_uri=sqlite_uri)
    run_trial(sweep, 0, {"batch_size": 8}, [0.5], state="pruned")
    run_trial(sweep, 1, {"batch_size": 8}, [0.5], state="fail")
    with pytest.raises(tracking.NoFinishedTrial, match=r"among 2 trial runs \(1 FAILED, 1 KILLED\)"):
        tracking.best_run("all-pruned", tracking_uri=sqlite_uri)


def test_curves_are_long_form_in_the_order_asked(known_store):
    table = tracking.runs_table("known", tracking_uri=known_store)
    ids = list(table.loc[table["trial_number"].isin([3, 1]), "run_id"])[::-1]  # trial 3 first, then 1
    frame = tracking.curves(ids, "val_cost", tracking_uri=known_store)
    assert list(frame.columns) == ["run_id", "trial_number", "step", "value"]
    assert list(frame["trial_number"]) == [3, 1, 1]
    assert list(frame["step"]) == [1, 1, 2]
    assert list(frame["value"]) == [0.1, 0.8, 0.3]
    empty = tracking.curves(ids, "no_such_metric", tracking_uri=known_store)
    assert empty.empty and list(empty.columns) == list(frame.columns)
    assert isinstance(tracking.curves([], "val_cost", tracking_uri=known_store), pd.DataFrame)
