"""``sweeps export``: the best (or a chosen) trial of a real CSV sweep as an MLflow pyfunc model, loaded back
with ``mlflow.pyfunc`` and served by the real ``mlflow models predict``; mistakes refused with nothing written.

One small sweep (the wine CSV, a grid of two learning rates for two epochs: one trial completes, one
diverges) is shared by the module's tests to keep them quick.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, cli_env, new_workdir, run_cli

CSV = ROOT / "examples" / "data" / "wine_colour.csv"
SPEC = """\
name: wine-export
seed: 3
trials: 2
dataset: {path: wine_colour.csv, target: cultivar, val_fraction: 0.25}
model: {hidden: [6], activation: relu}
training: {epochs: 2}
search:
  batch_size: 32
  optimizer: momentum
  lr: {choices: [0.05, 1.0e+9]}
  beta1: 0.9
sampler: {name: grid}
pruner: {name: none}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, template_db) -> dict:
    folder = tmp_path_factory.mktemp("export")
    shutil.copy(CSV, folder / "wine_colour.csv")
    (folder / "spec.yaml").write_text(SPEC)
    import sweeps

    sweeps.run(
        folder / "spec.yaml", workdir=new_workdir(folder / ".sweeps", template_db)
    )  # the sweep itself is not under test here
    uri = f"sqlite:///{folder / '.sweeps' / 'mlflow.db'}"
    from mlflow import MlflowClient

    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("wine-export").experiment_id], "tags.role = 'trial'"
    )
    state = {int(r.data.tags["trial_number"]): r.data.tags["trial_state"] for r in runs}
    assert sorted(state.values()) == ["complete", "fail"], state  # lr 1e9 diverges
    completed = next(n for n, s in state.items() if s == "complete")
    failed = next(n for n, s in state.items() if s == "fail")
    return {"folder": folder, "uri": uri, "ok": completed, "bad": failed}


def _client(sweep):
    from mlflow import MlflowClient

    return MlflowClient(sweep["uri"])


def _written(sweep) -> tuple:
    """What the store holds: runs of the sweep's experiment, registered models and logged models."""
    client = _client(sweep)
    experiment = client.get_experiment_by_name("wine-export")
    runs = client.search_runs([experiment.experiment_id])
    logged = client.search_logged_models([experiment.experiment_id])
    artifacts = sorted(p.name for p in (sweep["folder"] / ".sweeps" / "mlartifacts").rglob("*"))
    return len(runs), [m.name for m in client.search_registered_models()], len(logged), artifacts


def _raw_rows() -> pd.DataFrame:
    """Rows as a user has them: the original columns (in another order) with an extra one, no label, and whole
    numbers as integers (MLflow would refuse int64 where a signature says double)."""
    frame = pd.read_csv(CSV).drop(columns=["cultivar"]).astype({"magnesium": int, "proline": int})
    return frame[list(reversed(frame.columns))].assign(note="unused")


def test_export_cli_logs_and_registers_a_model_that_predicts_labels_of_raw_rows(sweep, monkeypatch):
    import mlflow

    import optcore

    proc = run_cli(
        "export", "spec.yaml", "--retrain", "train+val", "--register", "wine-cultivar", "--json", cwd=sweep["folder"]
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["trial_number"] == sweep["ok"] and out["retrain"] == "train+val"
    assert out["registered_name"] == "wine-cultivar" and out["registered_version"] == 1
    assert out["final_val_cost"] is None  # nothing held out

    run = _client(sweep).get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == f"export-trial-{sweep['ok']:04d}"
    tags = run.data.tags
    assert tags["role"] == "export" and tags["exported_trial"] == str(sweep["ok"]) and tags["retrain"] == "train+val"
    assert tags["exported_run_id"] == out["trial_run_id"] and tags["mlflow.parentRunId"]
    assert run.data.params["lr"] == "0.05" and "final_val_cost" not in run.data.metrics

    monkeypatch.setattr(sys, "path", list(sys.path))  # loading a model puts its code folder first
    mlflow.set_tracking_uri(sweep["uri"])
    try:
        model = mlflow.pyfunc.load_model("models:/wine-cultivar/1")
        rows = _raw_rows()
        labels = model.predict(rows)
        proba = model.predict(rows, params={"output": "probabilities"})
        saved = model.unwrap_python_model().model  # the optcore.Model the pyfunc model loaded
    finally:
        mlflow.set_tracking_uri(None)
    assert isinstance(saved, optcore.Model)
    np.testing.assert_array_equal(labels, saved.predict(rows))
    assert list(proba.columns) == ["class_0", "class_1", "class_2"]
    np.testing.assert_allclose(proba.to_numpy().sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, proba.columns.to_numpy()[proba.to_numpy().argmax(axis=1)])
    # train+val: the scaler was refitted on every row of the file, x̃ = (x − mean of all rows) / std of all rows
    numeric = pd.read_csv(CSV).drop(columns=["cultivar", "colour"])
    scaler = saved.preprocess.features.named_transformers_["numeric"][-1]
    np.testing.assert_allclose(scaler.mean_, numeric.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(scaler.scale_, numeric.std(ddof=0).to_numpy(), rtol=1e-12)

    # The real `mlflow models predict` on a CSV of raw rows, in this environment.
    (sweep["folder"] / "rows.csv").write_text(_raw_rows().head(6).to_csv(index=False))  # magnesium 127, not 127.0
    predict = ["models", "predict", "-m", "models:/wine-cultivar/1", "-i", "rows.csv", "-t", "csv"]
    served = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), *predict, "--env-manager", "local", "-o", "out.json"],
        cwd=sweep["folder"],
        env={**cli_env(), "MLFLOW_TRACKING_URI": sweep["uri"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert served.returncode == 0, served.stderr
    predictions = json.loads((sweep["folder"] / "out.json").read_text())["predictions"]
    assert predictions == list(labels[:6])


def test_export_from_python_retrains_the_trials_own_network(sweep):
    import sweeps

    done = sweeps.export_model(sweep["folder"] / "spec.yaml", trial=sweep["ok"], workdir=sweep["folder"] / ".sweeps")
    assert done.retrain == "train" and done.registered_name is None
    # Same data split, seed and BLAS threads as the trial: the same final validation cost, to the last bit.
    assert done.final_val_cost == done.trial_val_cost and done.same_as_trial
    metrics = _client(sweep).get_run(done.run_id).data.metrics
    assert metrics["final_val_cost"] == done.final_val_cost


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trial", "{bad}"], r"--trial {bad}: trial {bad} was failed, not completed; .*\(completed: {ok}\)"),
        (["--register", "team/wine"], r"--register: registered model name 'team/wine' contains '/'"),
        (["--workdir", "elsewhere"], r"no sweep named 'wine-export' in journal file"),
    ],
)
def test_export_cli_refuses_mistakes_in_one_line_with_nothing_written(sweep, args, message):
    before = _written(sweep)
    args = [a.format(**sweep) for a in args]
    proc = run_cli("export", "spec.yaml", *args, cwd=sweep["folder"])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message.format(**sweep), lines[0]), proc.stderr
    assert _written(sweep) == before
    assert not (sweep["folder"] / "elsewhere").exists()


def test_export_from_python_refuses_what_cannot_be_exported(sweep):
    import sweeps
    from sweeps.errors import SweepError, UsageError

    folder = sweep["folder"]
    where = {"workdir": folder / ".sweeps"}
    before = _written(sweep)
    with pytest.raises(UsageError, match=r"^--trial 99: the sweep 'wine-export' has no trial 99 \(its trials: 0–1\)$"):
        sweeps.export_model(folder / "spec.yaml", trial=99, **where)
    with pytest.raises(UsageError, match=r"^--retrain must be one of train, train\+val; got 'all'$"):
        sweeps.export_model(folder / "spec.yaml", retrain="all", **where)
    assert _written(sweep) == before
    diverging = sweeps.load_spec(
        folder / "spec.yaml", ["name=wine-diverges", "search.lr=1.0e+9", "sampler.name=random", "trials=1"]
    )
    sweeps.run(diverging, **where)
    with pytest.raises(SweepError) as e:
        sweeps.export_model(diverging, **where)
    assert str(e.value) == (
        "the sweep 'wine-diverges' has no completed trial to export (0 completed, 0 pruned, 1 failed); "
        "run more trials with `sweeps run SPEC --trials N`"
    )
