"""What the sweep report reads from and writes to MLflow (tracking.report), on a real SQLite store."""

from __future__ import annotations

import tracking
from tracking.report import log_report, reads_directly, run_tags, sweep_trials


def test_trials_and_curves_of_one_parent_then_the_report_and_metrics_logged(sqlite_uri, run_trial, tmp_path):
    sweep = tracking.start_sweep("rep", tracking_uri=sqlite_uri, tags={"dataset_fingerprint": "abc123"})
    run_trial(sweep, 0, {"batch_size": 32, "schedule": "constant"}, [0.9, 0.5])
    run_trial(sweep, 1, {"batch_size": 64, "schedule": "cosine"}, [0.8, 0.4, 0.3], state="pruned")
    other = tracking.start_sweep("rep", tracking_uri=sqlite_uri)  # another parent in the same experiment
    run_trial(other, 0, {"batch_size": 128, "schedule": "constant"}, [0.1])

    table, curves = sweep_trials(sqlite_uri, sweep.run_id)
    assert list(table["trial_number"]) == [0, 1] and list(table["batch_size"]) == [32, 64]
    assert curves.groupby("trial_number")["value"].apply(list).to_dict() == {0: [0.9, 0.5], 1: [0.8, 0.4, 0.3]}
    assert run_tags(sqlite_uri, sweep.run_id)["dataset_fingerprint"] == "abc123"

    page = tmp_path / "rep-report.html"
    page.write_text("<html></html>")
    path = log_report(sqlite_uri, sweep.run_id, page, {"importance.lr": 0.75, "importance.lr.low": 0.5})
    client = tracking.make_client(sqlite_uri)
    assert path == "report/rep-report.html"
    assert [a.path for a in client.list_artifacts(sweep.run_id, "report")] == [path]
    assert client.get_run(sweep.run_id).data.metrics == {"importance.lr": 0.75, "importance.lr.low": 0.5}


def test_reads_directly_only_where_the_records_are_read_without_mlflow(store_uri, monkeypatch):
    """The report child, which never loads MLflow, reads the records itself only from an embedded store read
    directly; from a server, or with the direct reads turned off, the command reads them and hands them over."""
    sweep = tracking.start_sweep("direct-or-not", tracking_uri=store_uri)
    assert reads_directly(store_uri, sweep.run_id) is store_uri.startswith("sqlite:")
    monkeypatch.setenv("TRACKING_DIRECT_SQLITE", "0")
    assert not reads_directly(store_uri, sweep.run_id)
