"""An exported setting as an MLflow model: an :class:`optcore.Model` logged as a pyfunc model, optionally
registered in the Model Registry.

    check_model_name("wine-cultivar")                      # None, or what is wrong with the name
    logged = log_model(model, tracking_uri=uri, run_id=run_id, register="wine-cultivar")
    mlflow.pyfunc.load_model(logged.model_uri).predict(frame)

What the model holds (see :mod:`tracking.pyfunc_entry`): the entry file (MLflow's "models from code"), a copy
of the ``optcore`` package as its code, the artifact ``optcore_model`` (``network.json``, ``weights.npz``,
``preprocess.pkl``), a signature whose inputs are the training table's raw columns (numbers typed ``Any``,
see :func:`loose_numbers`), an input example of a few raw training rows, and the parameter ``output``
(``labels`` or ``probabilities``). Its requirements pin MLflow, NumPy, pandas, scikit-learn and SciPy at the
versions that saved it: the preprocessing is a pickled scikit-learn transformer, which scikit-learn only
promises to read back with the same version. optsweep itself is not a requirement (``optcore`` travels with
the model).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENTRY = Path(__file__).with_name("pyfunc_entry.py")
MODEL_NAME = "model"  # the logged model's name, and its folder in the run's artifacts
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "scipy")
# MLflow refuses these characters in a registered model's name (mlflow.utils.validation); checked before
# anything is trained or written, so a bad --register costs nothing.
FORBIDDEN_IN_NAME = ("/", ":")


@dataclass(frozen=True)
class LoggedModel:
    """Where the model went: ``model_uri`` (``models:/m-…``) and, when registered, the version."""

    model_uri: str
    run_id: str
    registered_name: str | None = None
    registered_version: int | None = None

    @property
    def registry_uri(self) -> str | None:
        """``models:/NAME/VERSION`` when registered."""
        if self.registered_name is None:
            return None
        return f"models:/{self.registered_name}/{self.registered_version}"


def check_model_name(name: str) -> str | None:
    """What is wrong with ``name`` as a registered model name, or None when MLflow will take it."""
    if not name or not name.strip():
        return "a registered model name must not be empty"
    if name != name.strip():
        return f"registered model name {name!r} starts or ends with a space"
    bad = [c for c in FORBIDDEN_IN_NAME if c in name]
    if bad:
        return f"registered model name {name!r} contains {bad[0]!r}; names cannot contain '/' or ':'"
    if name in (".", ".."):
        return f"registered model name {name!r} is not allowed"
    return None


def requirements() -> list[str]:
    """``package==version`` for what the model imports, at this environment's versions."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in REQUIREMENTS]


def input_example(model: Any) -> Any:
    """A few raw training rows as a DataFrame: the table's own columns, or ``x0 … x{n-1}`` for a bare array."""
    import pandas as pd

    pre = model.preprocess
    if pre.example is None:
        raise ValueError("the model's preprocessing keeps no example rows; load its dataset with optcore")
    if hasattr(pre.example, "columns"):
        return pre.example.reset_index(drop=True)
    return pd.DataFrame(pre.example, columns=[f"x{i}" for i in range(pre.n_columns)])


ROLE_EXPORT = "export"  # the ``role`` tag of an export run (trials are ``trial``, the sweep ``sweep``)


def export_run_name(trial_number: int) -> str:
    """``export-trial-0007``: beside the trial runs it came from when the UI sorts by name."""
    return f"export-trial-{trial_number:04d}"


def start_export_run(
    *,
    tracking_uri: str,
    experiment: str,
    parent_run_id: str | None,
    trial_number: int,
    trial_run_id: str,
    params: dict[str, Any],
    tags: dict[str, Any],
    metrics: dict[str, float],
) -> str:
    """Create the export run of trial ``trial_number`` in ``experiment`` (nested under the sweep's parent run
    when there is one), log ``params``, ``tags`` and ``metrics`` to it and return its id. It stays RUNNING
    until :func:`log_model` ends it."""
    import time

    from mlflow.entities import Metric, Param

    from tracking import schema
    from tracking.mlflow_requests import log_batched, param_value, tag_value
    from tracking.runs import get_or_create_experiment
    from tracking.store import artifact_location_for, make_client

    client = make_client(tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment, artifact_location_for(tracking_uri))
    all_tags = {
        **{k: tag_value(v) for k, v in tags.items()},
        schema.ROLE: ROLE_EXPORT,
        "exported_trial": str(trial_number),
        "exported_run_id": trial_run_id,
    }
    if parent_run_id:
        all_tags[schema.PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, run_name=export_run_name(trial_number), tags=all_tags)
    now = int(time.time() * 1000)
    log_batched(
        client,
        run.info.run_id,
        params=[Param(k, param_value(v)) for k, v in params.items()],
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
    )
    return run.info.run_id


NUMERIC_TYPES = ("integer", "long", "float", "double")


def loose_numbers(schema: Any) -> Any:
    """``schema`` with its numeric columns typed ``Any``: MLflow refuses an int64 column where the schema says
    double ("can not safely convert"), and a CSV column of whole numbers reads as int64 — the preprocessing
    takes either. Columns stay named and required, so a missing column is still refused up front."""
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return Schema(
        [
            ColSpec(AnyType(), c.name, c.required) if getattr(c.type, "name", None) in NUMERIC_TYPES else c
            for c in schema.inputs
        ]
    )


def log_model(model: Any, *, tracking_uri: str, run_id: str, register: str | None = None) -> LoggedModel:
    """Log ``model`` (an :class:`optcore.Model`) to run ``run_id`` as a pyfunc model; register it as
    ``register`` when given. The run is ended (FINISHED, or FAILED when logging fails)."""
    import mlflow
    from mlflow.models import infer_signature

    import optcore
    from tracking.pyfunc_entry import ARTIFACT, OUTPUT_PARAM, OUTPUTS

    example = input_example(model)
    signature = infer_signature(example, model.predict(example), params={OUTPUT_PARAM: OUTPUTS[0]})
    signature.inputs = loose_numbers(signature.inputs)
    previous = mlflow.get_tracking_uri()
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / ARTIFACT)
        mlflow.set_tracking_uri(tracking_uri)
        try:
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    python_model=str(ENTRY),
                    artifacts={ARTIFACT: str(folder)},
                    code_paths=[str(Path(optcore.__file__).parent)],
                    signature=signature,
                    input_example=example,
                    pip_requirements=requirements(),
                    registered_model_name=register,
                )
        finally:
            mlflow.set_tracking_uri(previous)
    version = info.registered_model_version
    return LoggedModel(info.model_uri, run_id, register, int(version) if version is not None else None)
