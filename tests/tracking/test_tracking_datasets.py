"""Dataset inputs and fixed-setting params of the parent and trial runs, against a real SQLite store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import tracking
from tracking import datasets, writer
from tracking.datasets import CONTEXT_TAG, TRAINING, VALIDATION, DatasetRecord, describe_dataset

PARAMS = {"batch_size": 64, "optimizer": "adam", "lr": 0.001}


def _splits(n_features: int = 3) -> dict:
    rng = np.random.default_rng(0)
    return {
        TRAINING: (rng.normal(size=(30, n_features)), rng.normal(size=(30, 1))),
        VALIDATION: (rng.normal(size=(10, n_features)), rng.normal(size=(10, 1))),
    }


def _inputs(client, run_id: str) -> dict[str, tuple[str, str]]:
    """context -> (name, digest) of the run's dataset inputs; fails on two inputs of one context."""
    out = {}
    for i in client.get_run(run_id).inputs.dataset_inputs:
        context = {t.key: t.value for t in i.tags}[CONTEXT_TAG]
        assert context not in out, f"two {context} inputs on {run_id}"
        out[context] = (i.dataset.name, i.dataset.digest)
    return out


def test_description_keeps_the_digest_and_reads_shapes_from_the_arrays():
    train, val = describe_dataset("moons", "f9f1203345554d50", {"name": "moons", "n_samples": 40}, _splits())
    assert (train.name, train.context, val.name, val.context) == ("moons-train", TRAINING, "moons-val", VALIDATION)
    assert train.digest == val.digest == "f9f1203345554d50"
    assert train.source_type == "code"
    assert json.loads(train.source) == {"tags": {"name": "moons", "n_samples": "40"}}
    features = json.loads(json.loads(train.schema)["mlflow_tensorspec"]["features"])
    assert features[0]["tensor-spec"] == {"dtype": "float64", "shape": [-1, 3]}
    assert json.loads(train.profile)["features_shape"] == [30, 3]
    assert json.loads(val.profile)["targets_shape"] == [10, 1]


def test_a_file_is_a_local_source_and_secrets_never_reach_a_source(tmp_path):
    (file,) = describe_dataset("data.csv", "ab" * 8, str(tmp_path / "data.csv"), {TRAINING: _splits()[TRAINING]})
    assert (file.source_type, json.loads(file.source)) == ("local", {"uri": str(tmp_path / "data.csv")})
    settings = {"loader": "m:f", "password": "hunter2", "url": "postgresql://u:pw-1@db/x", "opts": {"token": "t0k"}}
    (code,) = describe_dataset("m:f", "ab" * 8, settings, {TRAINING: _splits()[TRAINING]})
    assert "hunter2" not in code.source and "pw-1" not in code.source and "t0k" not in code.source
    assert json.loads(code.source)["tags"]["password"] == "***"


@pytest.mark.parametrize(
    ("digest", "splits", "message"),
    [("", {}, "digest"), ("x" * 37, {}, "digest"), ("abc", {"test": (np.zeros((1, 1)), np.zeros((1, 1)))}, "test")],
)
def test_bad_digests_and_contexts_are_refused(digest, splits, message):
    with pytest.raises(ValueError, match=message):
        describe_dataset("moons", digest, {}, splits)


@pytest.mark.parametrize(
    ("store", "mode"),
    [("sqlite", "process"), ("sqlite", "off"), ("server", "process")],
    ids=["writer", "direct", "server"],
)
def test_parent_and_trials_carry_inputs_and_settings_and_a_resume_relogs_them(
    request, run_trial, monkeypatch, store, mode
):
    monkeypatch.setenv("TRACKING_WRITER", mode)
    store_uri = request.getfixturevalue(f"{store}_uri")
    inputs = describe_dataset("moons", "0123456789abcdef", {"name": "moons"}, _splits())
    settings = {"model.hidden": "[8]", "training.epochs": "4", "training.objective": "final_val_cost"}
    trial_settings = {k: v for k, v in settings.items() if k != "training.objective"}

    def start(existing=None, params=settings):
        sweep = tracking.start_sweep(
            "inputs",
            tracking_uri=store_uri,
            existing_run_id=existing,
            params=params,
            trial_params=trial_settings,
            inputs=inputs,
        )
        shared = writer.shared_writer()
        deadline = time.monotonic() + 60
        while shared is not None and not shared.ready():  # so that the trials log through it
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.05)
        return sweep

    sweep = start()
    first = run_trial(sweep, 0, PARAMS, [0.9, 0.5])
    client = sweep.client
    expected = {TRAINING: ("moons-train", "0123456789abcdef"), VALIDATION: ("moons-val", "0123456789abcdef")}
    assert _inputs(client, sweep.run_id) == _inputs(client, first.run_id) == expected
    assert client.get_run(sweep.run_id).data.params == settings
    assert client.get_run(first.run_id).data.params == {
        **trial_settings,
        **{k: str(v) for k, v in PARAMS.items()},
        "seed": "1000",
    }

    writer.stop_shared_writer()  # a new process resumes: same parent, trial 0's run reused, trial 1 new
    again = start(sweep.run_id)
    assert again.run_id == sweep.run_id
    reused = run_trial(again, 0, PARAMS, [0.9, 0.5, 0.4])
    second = run_trial(again, 1, PARAMS, [0.8])
    assert reused.run_id == first.run_id
    for run_id in (sweep.run_id, first.run_id, second.run_id):
        assert _inputs(client, run_id) == expected  # one input per context, however often it was logged
    assert client.get_run(sweep.run_id).data.params == settings

    with pytest.raises(tracking.TrackingError, match=re.escape("model.hidden='[8]' (now '[16]')")):
        start(sweep.run_id, params={**settings, "model.hidden": "[16]"})


def _by_mlflow(name, digest, source, splits) -> tuple[DatasetRecord, ...]:
    """The records as MLflow describes the splits: ``mlflow.data.from_numpy(...).to_dict()`` with MLflow's
    own source (a code source of the recorded settings, or what its registry makes of the path)."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if isinstance(source, dict):
        origin = CodeDatasetSource(datasets._settings(source))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            origin = resolve_dataset_source(datasets.redact(source))
    records = []
    for context, (features, targets) in splits.items():
        split = f"{name[: datasets.MAX_NAME]}-{datasets.SUFFIXES[context]}"
        d = mlflow.data.from_numpy(features, source=origin, targets=targets, name=split, digest=digest).to_dict()
        records.append(
            DatasetRecord(d["name"], d["digest"], d["source_type"], d["source"], d["schema"], d["profile"], context)
        )
    return tuple(records)


def _array(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) % 3).reshape(shape).astype(dtype)


DTYPES = ["float64", "float32", "int64", "bool", "int32", "uint8", "float16", "complex128", ">f8"]
SHAPES = [((30, 3), (30, 1)), ((7, 1), (7, 4)), ((0, 5), (0, 2)), ((12, 2), (12,)), ((4, 2, 3), (4, 1)), ((5, 2), None)]
SOURCES = [
    {"name": "moons", "n_samples": 40, "noise": 0.1, "nested": {"token": "t0k", "k": [1, 2]}, "é": 'ü "q"'},
    {},
    "/abs/data/moons.csv",
    "relative/data.csv",
    "~/data with space.npz",
    "/abs/odd;name?x#y.csv",
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_records_are_mlflows_for_numeric_arrays(dtype, shapes, monkeypatch):
    features_shape, targets_shape = shapes
    features = _array(dtype, features_shape)
    targets = None if targets_shape is None else _array(dtype, targets_shape)
    splits = {TRAINING: (features, targets), VALIDATION: (features[:2], targets if targets is None else targets[:2])}
    monkeypatch.setattr(datasets, "_described_by_mlflow", _no_mlflow)
    for source in SOURCES[:3]:
        assert describe_dataset("moons", "f9f1203345554d50", source, splits) == _by_mlflow(
            "moons", "f9f1203345554d50", source, splits
        )


@pytest.mark.parametrize("source", SOURCES, ids=str)
def test_records_are_mlflows_for_every_kind_of_source(source, monkeypatch):
    monkeypatch.setattr(datasets, "_described_by_mlflow", _no_mlflow)
    assert describe_dataset("n" * 600, "ab", source, _splits()) == _by_mlflow("n" * 600, "ab", source, _splits())


def _no_mlflow(*args):
    raise AssertionError(f"described by MLflow: {args[:3]}")


@pytest.mark.parametrize(
    ("source", "features"),
    [
        ("s3://bucket/moons.csv", np.zeros((3, 2))),  # another source type
        ("https://example.com/moons.csv", np.zeros((3, 2))),
        ("file:///abs/moons.csv", np.zeros((3, 2))),  # a URI: MLflow's registry reads it
        ({"n": 1}, np.array([["a", "bc"]] * 3)),  # strings: MLflow renames their dtype
        ({"n": 1}, np.array([[object()]] * 3)),
        ({"n": 1}, np.array([["2024-01-01"]] * 3, dtype="datetime64[D]")),
        ({"n": 1}, np.ma.masked_array(np.zeros((3, 2)))),  # not a plain ndarray
    ],
    ids=["s3", "https", "file-uri", "strings", "objects", "datetimes", "masked"],
)
def test_what_is_not_computed_here_is_described_by_mlflow(source, features, monkeypatch):
    calls = []
    real = datasets._described_by_mlflow
    monkeypatch.setattr(datasets, "_described_by_mlflow", lambda *a: calls.append(a) or real(*a))
    splits = {TRAINING: (features, np.zeros((3, 1)))}
    assert describe_dataset("m", "ab", source, splits) == _by_mlflow("m", "ab", source, splits)
    assert len(calls) == 1


def test_a_dataset_source_plugin_leaves_paths_to_mlflow(monkeypatch):
    calls = []
    real = datasets._described_by_mlflow
    monkeypatch.setattr(datasets, "_described_by_mlflow", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(datasets, "_dataset_source_plugins", lambda: True)
    describe_dataset("m", "ab", "/abs/data.csv", _splits())
    assert len(calls) == 2
    describe_dataset("m", "ab", {"n": 1}, _splits())  # a code source is no plugin's business
    assert len(calls) == 2


def test_describing_a_dataset_imports_no_mlflow(tmp_path):
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from tracking.datasets import describe_dataset\n"
        "splits = {'training': (np.zeros((4, 2)), np.zeros((4, 1))), 'validation': (np.ones((2, 2)), np.ones(2))}\n"
        "describe_dataset('d', 'abc', {'name': 'd', 'password': 'x'}, splits)\n"
        "describe_dataset('d', 'abc', '/abs/d.csv', splits)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
