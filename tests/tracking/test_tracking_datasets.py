"""Dataset inputs and fixed-setting params of the parent and trial runs, against a real SQLite store."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

import tracking
from tracking import writer
from tracking.datasets import CONTEXT_TAG, TRAINING, VALIDATION, describe_dataset

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
