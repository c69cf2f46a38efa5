"""What tracking.models checks before anything is trained or written: registered model names."""

import pytest

from tracking.models import check_model_name, export_run_name, requirements


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("wine-cultivar", None),
        ("Wine cultivar v2.1", None),
        ("", "a registered model name must not be empty"),
        ("   ", "a registered model name must not be empty"),
        (" wine", "registered model name ' wine' starts or ends with a space"),
        ("team/wine", "registered model name 'team/wine' contains '/'; names cannot contain '/' or ':'"),
        ("wine:1", "registered model name 'wine:1' contains ':'; names cannot contain '/' or ':'"),
        ("..", "registered model name '..' is not allowed"),
    ],
)
def test_registered_model_names(name, problem):
    assert check_model_name(name) == problem


def test_export_runs_sort_by_trial_and_requirements_are_pinned():
    assert export_run_name(7) == "export-trial-0007"
    pins = requirements()
    assert [p.split("==")[0] for p in pins] == ["mlflow", "numpy", "pandas", "scikit-learn", "scipy"]
    assert all(p.split("==")[1] for p in pins)
