"""Addresses in the MLflow UI that sweeps prints: the runs view of the "Model training" workflow, never a
password (the real UI behind them is checked in tests/sweeps/test_cli.py's `ui` tests)."""

from __future__ import annotations

import pytest

from tracking.server import experiments_url, runs_url


@pytest.mark.parametrize(
    ("base", "experiment_id", "expected"),
    [
        ("http://127.0.0.1:5000", "1", "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"),
        ("http://127.0.0.1:5000/", "12", "http://127.0.0.1:5000/#/experiments/12/runs?workflowType=machine_learning"),
        (
            "https://bob:s3cret@mlflow.example/x",
            "3",
            "https://mlflow.example/x/#/experiments/3/runs?workflowType=machine_learning",
        ),
        ("http://h:5000/?token=s3cret", "4", "http://h:5000/#/experiments/4/runs?workflowType=machine_learning"),
        ("http://bob:s3cret@h:5000", None, "http://h:5000/#/experiments?workflowType=machine_learning"),
    ],
)
def test_runs_addresses_select_model_training_and_drop_credentials(base, experiment_id, expected):
    assert runs_url(base, experiment_id) == expected
    assert "s3cret" not in experiments_url(base)
