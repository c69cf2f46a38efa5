"""``training.noise_scale: true`` through the real CLI: every trial's MLflow run gets the noise-scale curves."""

from __future__ import annotations

import math

import mlflow
import pytest

from sweeps.spec import load_spec
from sweeps.spec.errors import SpecError
from tests.conftest import TINY_SPEC, new_workdir, run_cli

NOISE_CURVES = ("noise_scale", "noise_grad_sq", "noise_trace_sigma")


def test_noise_scale_is_logged_for_every_epoch_of_every_trial(tmp_path, template_db):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC.replace("training: {epochs: 4}", "training: {epochs: 3, noise_scale: true}"))
    wd = new_workdir(tmp_path / "wd", template_db)
    run_cli("run", spec, "--trials", "2", "--workdir", wd, cwd=tmp_path, check=True)

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'wd' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.role = 'trial'")
    assert len(runs) == 2
    for run in runs:
        history = {key: client.get_metric_history(run.info.run_id, key) for key in NOISE_CURVES}
        for key, points in history.items():
            assert [p.step for p in points] == [1, 2, 3], key
        # The logged noise scale is the ratio of the logged components (NaN only where |G|² ≤ 0).
        for scale, grad_sq, trace in zip(*history.values(), strict=True):
            assert trace.value > 0
            if grad_sq.value > 0:
                assert scale.value == pytest.approx(trace.value / grad_sq.value, rel=1e-6)
            else:
                assert math.isnan(scale.value)


def test_noise_scale_is_off_by_default_and_must_be_a_boolean():
    assert load_spec(TINY_SPEC).training.noise_scale is False
    expected = r"training\.noise_scale: 'often' is not allowed: noise_scale must be true or false"
    with pytest.raises(SpecError, match=expected):
        load_spec(TINY_SPEC, ["training.noise_scale=often"])
