"""The parent run's summary (best trial, trials table, spec, plots) and password redaction everywhere."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracking
from tests.conftest import cli_env
from tracking import schema

SECRETS = ("s3cret", "hunter2", "pa55word")


def _with_password(uri: str) -> str:
    # The test server does not check credentials, so a password in its URI exercises redaction for real.
    return uri.replace("http://", "http://alice:s3cret@") if uri.startswith("http://") else uri


def _params(batch_size: int, **extra) -> dict:
    return {"batch_size": batch_size, "optimizer": "adam", "lr": 0.01, "schedule": "constant", **extra}


def _artifacts(client, run_id: str, dest: Path) -> dict[str, bytes]:
    root = Path(client.download_artifacts(run_id, "", str(dest)))
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_summary_copies_the_best_trial_and_rewrites_on_update(store_uri, run_trial, tmp_path):
    sweep = tracking.start_sweep("summary", tracking_uri=store_uri)
    run_trial(sweep, 0, _params(32), [0.9, 0.5])
    run_trial(sweep, 2, _params(128), [0.8, 0.3])  # ties with trial 1: the lower trial number wins
    run_trial(sweep, 1, _params(64), [0.7, 0.3])
    run_trial(sweep, 3, _params(256), [0.1], state="pruned")  # lower, but pruned trials never win
    run_trial(sweep, 4, _params(512), [0.9, 1e308], state="fail", reason="cost diverged at epoch 2")
    spec = {"name": "summary", "search_space": {"batch_size": [32, 64, 128, 256, 512]}}
    table = sweep.update_summary(spec)
    assert list(table["trial_number"]) == [0, 1, 2, 3, 4]

    client = sweep.client
    parent = client.get_run(sweep.run_id)
    assert parent.data.tags["best.trial_number"] == "1"
    assert parent.data.tags["best.batch_size"] == "64"
    assert parent.data.tags["best.schedule"] == "constant"
    assert parent.data.metrics["best.final_val_cost"] == 0.3
    assert parent.data.metrics["n_trials"] == 5
    assert parent.data.metrics["n_pruned"] == parent.data.metrics["n_fail"] == 1
    files = _artifacts(client, sweep.run_id, tmp_path / "first")
    assert set(files) == {
        "spec.yaml",
        "trials.csv",
        "plots/val_cost_curves.png",
        "plots/optimization_history.png",
        "plots/batch_size_vs_cost.png",
    }
    assert all(files[p].startswith(b"\x89PNG") for p in files if p.endswith(".png"))
    assert "batch_size:" in files["spec.yaml"].decode()

    # A better trial whose conditional params differ: tags follow it, stale best.* tags go, artifacts update.
    run_trial(sweep, 5, {"batch_size": 16, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9}, [0.4, 0.2])
    sweep.update_summary(spec)
    sweep.finish()
    parent = client.get_run(sweep.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best.trial_number"] == "5"
    assert parent.data.tags["best.momentum"] == "0.9"
    assert "best.schedule" not in parent.data.tags
    history = client.get_metric_history(sweep.run_id, "best.final_val_cost")
    assert sorted((m.step, m.value) for m in history) == [(5, 0.3), (6, 0.2)]
    rows = list(
        csv.DictReader(_artifacts(client, sweep.run_id, tmp_path / "second")["trials.csv"].decode().splitlines())
    )
    assert [r["trial_number"] for r in rows] == ["0", "1", "2", "3", "4", "5"]


def test_summary_of_a_sweep_without_finished_trials(sqlite_uri, run_trial, tmp_path):
    sweep = tracking.start_sweep("nothing-yet", tracking_uri=sqlite_uri)
    run_trial(sweep, 0, _params(32), [0.5], state="pruned")
    sweep.update_summary()
    parent = sweep.client.get_run(sweep.run_id)
    assert not [k for k in parent.data.tags if k.startswith(schema.BEST_PREFIX)]
    assert "spec.yaml" not in _artifacts(sweep.client, sweep.run_id, tmp_path)
    with pytest.raises(tracking.TrackingError, match=r"cannot rank trials by 'min_val_cost'.*best_val_cost"):
        sweep.update_summary(metric="min_val_cost")


def test_no_password_is_recorded_anywhere(store_uri, run_trial, tmp_path, caplog, capfd, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="tracking")
    # Even with MLflow's "View run at <URL>" printing switched back on, a URI with a password stays unprinted.
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    uri = _with_password(store_uri)
    storage = "postgresql+psycopg://bob:hunter2@db.internal:5432/optuna"
    sweep = tracking.start_sweep(
        "secrets", tracking_uri=uri, tags={"storage": storage}, existing_run_id="f" * 32
    )  # the unknown parent id is logged as a warning together with the (redacted) URI
    data_url = "https://carol:pa55word@data.example/x.csv?password=pa55word"
    run_trial(sweep, 0, _params(32, data_url=data_url), [0.5, 0.4])
    run_trial(sweep, 1, _params(64), [0.5], state="fail", reason=f"could not open {storage}")
    sweep.update_summary({"name": "secrets", "storage": storage, "nested": [{"url": data_url}]})

    client = sweep.client
    recorded = []
    for run in client.search_runs([sweep.experiment_id]):
        recorded += [*run.data.params.items(), *run.data.tags.items()]
        for name, blob in _artifacts(client, run.info.run_id, tmp_path / run.info.run_id).items():
            recorded.append((name, blob.decode("latin-1")))
    recorded.append(("log", caplog.text))
    recorded.append(("output", "".join(capfd.readouterr())))
    text = "\n".join(f"{k}={v}" for k, v in recorded)
    assert "postgresql+psycopg://bob:***@db.internal:5432/optuna" in text
    assert "carol:***@" in text
    assert "password=***" in text
    for secret in SECRETS:
        assert secret not in text, secret
    assert "not in" in caplog.text  # the warning about the unknown parent id was logged


def test_trial_logs_survive_an_unreachable_server(sqlite_uri, make_history, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast; tracking's own retries remain
    sweep = tracking.start_sweep("outage", tracking_uri=sqlite_uri)
    run = sweep.trial(0, _params(32), flush_every=2)
    history = make_history([0.5, 0.4])
    down = tracking.make_client("http://alice:s3cret@127.0.0.1:9")  # nothing listens on the discard port
    run.client = down
    from optcore.history import EpochRecord

    run.log_epoch(EpochRecord(1, 0.6, 0.5, 0.5, 0.01, 0.5))
    assert run.flush() is False  # retried, then kept in the buffer: not raised, not lost
    assert "s3cret" not in caplog.text and "values kept for the next flush" in caplog.text
    run.client = sweep.client  # the store is back
    run.finish("complete", history)
    steps = sorted(m.step for m in sweep.client.get_metric_history(run.run_id, "val_cost"))
    assert steps == [1, 2]


def test_finish_raises_a_tracking_error_when_the_store_stays_down(sqlite_uri, make_history, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run = tracking.start_sweep("down", tracking_uri=sqlite_uri).trial(0, _params(32))
    run.client = tracking.make_client("http://alice:s3cret@127.0.0.1:9")
    with pytest.raises(tracking.TrackingError, match="could not record trial 0") as error:
        run.finish("complete", make_history([0.5]))
    assert "s3cret" not in str(error.value)


FORKED_SUMMARY = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import tracking
    from tracking import plots
    from tracking.summary import update_sweep_summary
    from tests.tracking.conftest import _run_trial

    uri, out = sys.argv[1], Path(sys.argv[2])
    drawn_by = {}
    for name in ("plot_val_cost_curves", "plot_optimization_history", "plot_batch_size_vs_cost", "plot_front"):
        def spy(*args, _real=getattr(plots, name), _name=name):
            (out / f"{_name}.pid").write_text(str(os.getpid()))  # a copy's dict would not come back here
            return _real(*args)
        setattr(plots, name, spy)
    sweep = tracking.start_sweep("forked-summary", tracking_uri=uri)
    for n, (batch, costs) in enumerate([(32, [0.9, 0.5]), (128, [0.8, 0.3]), (64, [0.7, 0.2])]):
        _run_trial(sweep, n, {"batch_size": batch, "optimizer": "adam", "lr": 0.01, "schedule": "constant"}, costs)
    front = plots.ParetoFront(((0.5, 1.0), (0.3, 2.0)), (0, 1), ("final_val_cost", "train_seconds"))
    files = {}
    for fork in (False, True):
        update_sweep_summary(sweep, {"name": "s"}, front=front, fork=fork)
        folder = Path(sweep.client.download_artifacts(sweep.run_id, "plots", str(out / str(fork))))
        files[fork] = {p.name: p.read_bytes().hex() for p in sorted(folder.iterdir())}
        drawn_by[fork] = {p.stem: int(p.read_text()) != os.getpid() for p in out.glob("*.pid")}
    print(json.dumps({"same": files[False] == files[True], "names": sorted(files[True]), "in_copies": drawn_by}))
""")


def test_the_summarys_figures_drawn_in_forked_copies_are_those_drawn_in_turn(sqlite_uri, tmp_path):
    """``fork=True`` draws every figure but the curves in a copy of the process (the tracking writer's summary
    at the end of a sweep), and the PNGs are byte for byte those drawn one after another. In a fresh
    interpreter: a fork is safe there."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED_SUMMARY, sqlite_uri, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["names"] == [
        "batch_size_vs_cost.png",
        "optimization_history.png",
        "pareto_front.png",
        "val_cost_curves.png",
    ]
    assert found["same"]
    assert found["in_copies"]["false"] == {
        "plot_val_cost_curves": False,
        "plot_optimization_history": False,
        "plot_batch_size_vs_cost": False,
        "plot_front": False,
    }
    assert found["in_copies"]["true"] == {
        "plot_val_cost_curves": False,  # drawn here while the copies draw the rest
        "plot_optimization_history": True,
        "plot_batch_size_vs_cost": True,
        "plot_front": True,
    }
