"""A sweep over the user's own table: the spec's ``dataset: {path: …}`` block, end to end through the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import optcore
from sweeps.spec import SpecError, load_spec
from tests.conftest import TINY_SPEC, new_workdir, run_cli

HERE = Path(__file__).parent


def _table(path: Path, n: int = 160, gap: bool = False) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    shade = rng.choice(["light", "dark"], n)
    frame = pd.DataFrame({"x": x, "shade": shade, "kind": np.where((x > 0) ^ (shade == "dark"), "a", "b")})
    if gap:
        frame.loc[[4, 9], "x"] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _spec(folder: Path, dataset: dict, **changes) -> Path:
    data = yaml.safe_load(TINY_SPEC) | {"dataset": dataset, "trials": 2, "training": {"epochs": 2}} | changes
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_relative_path_is_read_from_the_spec_files_folder(tmp_path, monkeypatch):
    _table(tmp_path / "specs" / "data" / "t.csv")
    spec_file = _spec(tmp_path / "specs", {"path": "data/t.csv", "target": "kind", "impute": "median"})
    monkeypatch.chdir(tmp_path)  # another folder than the spec's
    spec = load_spec(spec_file)
    assert spec.dataset.path == str((tmp_path / "specs" / "data" / "t.csv").resolve())
    assert spec.resolved()["dataset"] == {
        "path": spec.dataset.path,
        "target": "kind",
        "impute": "median",
        "val_fraction": 0.2,
    }
    assert spec.dataset.n_train is None  # known once read: the batch-size bound is checked by training
    assert load_spec(spec.resolved()).spec_hash() == spec.spec_hash()  # the stored spec loads back to itself


@pytest.mark.parametrize(
    "dataset, field, message",
    [
        (
            {"path": "t.csv", "name": "moons"},
            "dataset.path",
            "exactly one of name, path, loader, openml; got name",
        ),
        ({"val_fraction": 0.3}, "dataset.name", "give exactly one of name, path, loader, openml; got none"),
        ({"path": "t.xlsx"}, "dataset.path", "the file must end in .csv, .tsv, .parquet"),
        ({"path": "absent.csv"}, "dataset.path", "no such file"),
        (
            {"path": "t.csv", "noise": 0.1},
            "dataset.noise",
            "unknown key for a path dataset; allowed keys: path",
        ),
        (
            {"openml": "adult", "sep": ";"},
            "dataset.sep",
            "keys: openml, target, task, impute, val_fraction, version",
        ),
        ({"path": "t.csv", "task": "ranking"}, "dataset.task", "ranking"),
        ({"name": "moons", "target": "y"}, "dataset.target", "applies to a table (path, loader or openml)"),
    ],
)
def test_bad_table_blocks_name_the_field(tmp_path, dataset, field, message):
    _table(tmp_path / "t.csv")
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        load_spec(_spec(tmp_path, dataset))
    assert str(info.value).startswith(field)


def test_a_loader_takes_the_blocks_other_keys_as_its_arguments(tmp_path):
    from sweeps.study.trial_lifecycle import setup_from_spec

    spec = load_spec(_spec(tmp_path, {"loader": "sklearn.datasets:make_moons", "n_samples": 120, "noise": 0.1}))
    data = setup_from_spec(spec).load()
    assert (data.name, data.task, data.n_train + data.X_val.shape[0]) == ("sklearn.datasets:make_moons", "binary", 120)
    assert data.params["noise"] == 0.1 and spec.resolved()["dataset"]["loader"] == "sklearn.datasets:make_moons"
    spec = load_spec(_spec(tmp_path, {"openml": 61, "version": 1, "data_home": str(tmp_path / "cache")}))
    assert spec.dataset.load_kwargs() == {"openml": 61, "version": 1, "data_home": str(tmp_path / "cache")}


def test_sweep_a_csv_from_the_cli_and_a_bad_table_writes_nothing(tmp_path, template_db):
    _table(tmp_path / "t.csv")
    spec_file = _spec(tmp_path, {"path": "t.csv", "val_fraction": 0.25})
    proc = run_cli("run", spec_file, "--workdir", new_workdir(tmp_path / "wd", template_db), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dataset t.csv: task binary: target 'kind' holds 2 distinct labels (a, b)" in proc.stdout
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'wd' / 'mlflow.db'}")
    parent = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.mlflow.parentRunId IS NULL"
    )[0]
    expected = optcore.load_dataset(path=str(tmp_path / "t.csv"), seed=7, val_fraction=0.25)
    assert parent.data.tags["dataset"] == "t.csv"
    assert parent.data.tags["dataset_fingerprint"] == expected.fingerprint

    # The same file elsewhere is the same data; a changed value is not: no resume, no reproduction.
    frame = pd.read_csv(tmp_path / "t.csv")
    frame.loc[0, "x"] += 1.0
    frame.to_csv(tmp_path / "t.csv", index=False)
    proc = run_cli("run", spec_file, "--set", "trials=3", "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and "the sweep 'tiny' was run on other data: dataset 't.csv'" in proc.stderr
    trial_run = client.search_runs([parent.info.experiment_id], "tags.mlflow.parentRunId IS NOT NULL")[0]
    proc = run_cli("reproduce", trial_run.info.run_id, "--workdir", tmp_path / "wd", cwd=tmp_path)
    assert proc.returncode == 2 and "the data has changed since run" in proc.stderr
    assert len(client.search_runs([parent.info.experiment_id])) == 3  # nothing was added

    _table(tmp_path / "bad" / "t.csv", gap=True)
    bad = _spec(tmp_path / "bad", {"path": "t.csv"})
    proc = run_cli("run", bad, "--workdir", tmp_path / "bad" / "wd", cwd=tmp_path / "bad")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: t.csv: column 'x' has missing values in 2 rows; fill them in, or set impute to one of mean, "
        "median, most_frequent"
    )
    assert not (tmp_path / "bad" / "wd").exists()
