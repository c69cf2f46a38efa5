"""What a sweep's MLflow runs record about their inputs: the spec's fixed settings as params, and the data
as MLflow dataset inputs — the same for every trial, so built once per sweep.

Settings are params named ``<block>.<key>`` (``dataset.n_samples``, ``model.hidden``, ``training.epochs``)
plus ``sweep_seed``: dotted names never meet a hyperparameter's. The parent run holds all of them; each
trial run those that change what it trains (:data:`TRIAL_TRAINING_KEYS` of the training block, the whole
dataset and model blocks), so runs of different sweeps line up column by column in the MLflow UI.
Values of secret-looking keys (a loader's ``password``) are masked, passwords in URLs redacted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sweeps.spec import Spec

if TYPE_CHECKING:
    from optcore import Dataset
    from tracking.datasets import DatasetRecord

SETTING_BLOCKS = ("dataset", "model", "training")
# The training block's keys that change the weights a trial ends with; the others (objective, what is
# recorded: record_minibatch, ewa_beta, noise_scale) leave the training itself alone.
TRIAL_TRAINING_KEYS = ("epochs", "schedule_unit")
SEED_PARAM = "sweep_seed"  # the spec's seed: the data's split and every trial's seed derive from it
# What MLflow accepts as a param name; a loader's keyword argument named otherwise stays in spec.yaml only.
_PARAM_NAME = re.compile(r"[\w\-. /]{1,250}")


def setting_params(spec: Spec, *, trial: bool = False) -> dict[str, str]:
    """The fixed settings as MLflow params: all of them for the parent run, those that change what a trial
    trains for a trial run (``trial=True``). Values are as MLflow stores them (text, cut to its limit)."""
    from tracking.mlflow_requests import param_value
    from tracking.redact import redact_setting

    resolved = spec.resolved()
    params: dict[str, Any] = {}
    for block in SETTING_BLOCKS:
        for key, value in resolved[block].items():
            if trial and block == "training" and key not in TRIAL_TRAINING_KEYS:
                continue
            params[f"{block}.{key}"] = value
    params[SEED_PARAM] = spec.seed
    return {k: param_value(redact_setting(k, v)) for k, v in params.items() if _PARAM_NAME.fullmatch(k)}


def dataset_inputs(spec: Spec, data: Dataset) -> tuple[DatasetRecord, ...]:
    """The training and validation splits of ``data`` (loaded from ``spec``) as MLflow dataset inputs.

    The digest is the data's fingerprint; the source is the data file, or else the dataset block with the
    seed that splits (and, for generated data, draws) it.
    """
    from tracking.datasets import TRAINING, VALIDATION, describe_dataset

    source = spec.dataset.path or {**spec.resolved()["dataset"], "seed": spec.seed}
    splits = {TRAINING: (data.X_train, data.Y_train), VALIDATION: (data.X_val, data.Y_val)}
    return describe_dataset(data.name, data.fingerprint, source, splits)
