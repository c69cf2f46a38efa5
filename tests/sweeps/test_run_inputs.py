"""A sweep's runs record its data as MLflow dataset inputs and its fixed settings as params: the real CLI,
a real SQLite MLflow store, the tiny spec, a CSV and a user's loader."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml

import optcore
from sweeps.spec import load_spec
from sweeps.study.run_inputs import SEED_PARAM, dataset_inputs, setting_params
from sweeps.study.trial_lifecycle import setup_from_spec
from tests.conftest import TINY_SPEC, new_workdir, run_cli

CONTEXT = "mlflow.data.context"


def _runs(workdir: Path, experiment: str = "tiny") -> tuple[mlflow.entities.Run, list[mlflow.entities.Run]]:
    """(parent run, trial runs by trial number) of the sweep in ``workdir``."""
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = sorted((r for r in runs if r not in parents), key=lambda r: int(r.data.tags["trial_number"]))
    assert len(parents) == 1
    return parents[0], trials


def _inputs(run) -> dict[str, tuple[str, str, str]]:
    """context -> (name, digest, source type) of the run's dataset inputs; fails on a context given twice."""
    out = {}
    for i in run.inputs.dataset_inputs:
        context = {t.key: t.value for t in i.tags}[CONTEXT]
        assert context not in out, f"{context} twice on {run.info.run_name}"
        out[context] = (i.dataset.name, i.dataset.digest, i.dataset.source_type)
    return out


def test_every_run_carries_the_data_and_settings_and_a_resumed_sweep_adds_no_copies(tiny_spec, tmp_path, template_db):
    workdir = new_workdir(tmp_path / "wd", template_db)
    run_cli("run", tiny_spec, "--trials", "2", "--workdir", workdir, cwd=tmp_path, check=True)
    proc = run_cli("run", tiny_spec, "--trials", "3", "--workdir", workdir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # params already logged with the same values are fine

    fingerprint = optcore.load_dataset("moons", seed=7, val_fraction=0.25, n_samples=400, noise=0.2).fingerprint
    expected = {
        "training": ("moons-train", fingerprint, "code"),
        "validation": ("moons-val", fingerprint, "code"),
    }
    parent, trials = _runs(workdir)
    assert len(trials) == 3
    for run in [parent, *trials]:
        assert _inputs(run) == expected, run.info.run_name
    train = next(i.dataset for i in parent.inputs.dataset_inputs if i.dataset.name == "moons-train")
    assert json.loads(train.profile)["features_shape"] == [300, 2]  # 400 samples, a quarter for validation
    assert json.loads(train.source)["tags"] == {
        "name": "moons",
        "val_fraction": "0.25",
        "n_samples": "400",
        "noise": "0.2",
        "seed": "7",
    }

    settings = {
        "dataset.name": "moons",
        "dataset.n_samples": "400",
        "dataset.noise": "0.2",
        "dataset.val_fraction": "0.25",
        "model.hidden": "[8]",
        "model.activation": "tanh",
        "model.l2": "0.0",
        "model.init": "xavier",  # not in the spec: optcore's pick for tanh
        "model.dtype": "float32",
        "training.epochs": "4",
        "training.schedule_unit": "epoch",
        SEED_PARAM: "7",
    }
    recorded_only = {  # what the parent holds besides: these leave each trial's training alone
        "training.objective": "final_val_cost",
        "training.record_minibatch": "False",
        "training.ewa_beta": "0.9",
        "training.noise_scale": "False",
    }
    assert parent.data.params == settings | recorded_only
    for run in trials:
        params = run.data.params
        assert {k: params[k] for k in settings} == settings
        assert not set(recorded_only) & set(params)
        assert {"batch_size", "optimizer", "lr", "schedule", "seed"} <= set(params)  # the trial's own, as before
    assert not [k for k in parent.data.tags if k.startswith(("best.dataset", "best.model", "best.training"))]


def _csv(path: Path, shift: float = 0.0) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=120)
    pd.DataFrame({"x": x + shift, "y": np.where(x > 0, "a", "b")}).to_csv(path, index=False)
    return path


def test_changed_data_gets_another_digest(tmp_path, template_db):
    data = _csv(tmp_path / "t.csv")
    spec = yaml.safe_load(TINY_SPEC) | {"dataset": {"path": "t.csv"}, "trials": 1, "training": {"epochs": 1}}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    digests = []
    for shift, workdir in ((0.0, tmp_path / "before"), (0.5, tmp_path / "after")):
        _csv(data, shift)
        run_cli("run", spec_file, "--workdir", new_workdir(workdir, template_db), cwd=tmp_path, check=True)
        fingerprint = optcore.load_dataset(path=str(data), seed=7).fingerprint
        parent, (trial,) = _runs(workdir)
        assert (
            _inputs(parent)
            == _inputs(trial)
            == {
                "training": ("t.csv-train", fingerprint, "local"),
                "validation": ("t.csv-val", fingerprint, "local"),
            }
        )
        assert {json.loads(i.dataset.source)["uri"] for i in trial.inputs.dataset_inputs} == {str(data)}
        assert trial.data.params["dataset.path"] == str(data)
        digests.append(fingerprint)
    assert digests[0] != digests[1]


LOADER = """
from sklearn.datasets import make_moons


def load(password, url, n_samples=80):
    assert password == "hunter2" and url == "postgresql://me:s3cret-pw@db/x"  # it got the real values
    return make_moons(n_samples, noise=0.2, random_state=0)
"""


def test_a_loaders_secrets_never_reach_params_or_inputs(tmp_path, monkeypatch):
    # The runs hold exactly these (the test above); a store adds nothing to check here.
    (tmp_path / "secret_loader.py").write_text(LOADER)
    monkeypatch.syspath_prepend(str(tmp_path))
    dataset = {"loader": "secret_loader:load", "password": "hunter2", "url": "postgresql://me:s3cret-pw@db/x"}
    spec = load_spec(yaml.safe_load(TINY_SPEC) | {"dataset": dataset})
    data = setup_from_spec(spec).load()

    for trial in (False, True):
        params = setting_params(spec, trial=trial)
        assert params["dataset.password"] == "***"
        assert params["dataset.url"] == "postgresql://me:***@db/x"
        assert params["dataset.loader"] == "secret_loader:load"
    records = dataset_inputs(spec, data)
    assert [r.context for r in records] == ["training", "validation"]
    assert {r.digest for r in records} == {data.fingerprint}
    shown = repr([params, records])
    assert "hunter2" not in shown and "s3cret-pw" not in shown
