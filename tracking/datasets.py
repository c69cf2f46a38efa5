"""The data a run trained on as MLflow dataset inputs, so the UI's Datasets column and run page show it.

A sweep describes its data once (:func:`describe_dataset`: the arrays' shapes and dtypes give the schema and
profile; nothing is copied or hashed again) and every run of the sweep logs the same records
(:func:`log_dataset_inputs`: one transaction on an embedded store, :func:`tracking.run_writes.log_inputs`; one
``log_inputs`` request elsewhere). A record is plain strings, so it is cheap to pickle to the writer process.
The strings are those ``mlflow.data.from_numpy(...).to_dict()`` gives, computed here without importing MLflow
(~2.4 s) for the arrays and sources a sweep has (numeric arrays, a settings mapping or a local path;
``tests/tracking/test_tracking_datasets.py`` compares them with MLflow's), by MLflow for anything else.

Each split is one dataset with its own name (``moons-train``, ``moons-val``: MLflow keeps one input per name
and digest in a run) and the input tag ``mlflow.data.context`` (``training``, ``validation``); the digest of
both is the data's fingerprint, the one ``sweeps reproduce`` checks.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.parse
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracking import run_writes
from tracking.mlflow_requests import with_retries
from tracking.redact import redact, redact_setting

if TYPE_CHECKING:
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput

TRAINING, VALIDATION = "training", "validation"
CONTEXT_TAG = "mlflow.data.context"  # MLflow's own input tag: the UI shows it beside the dataset
# The split's name suffix per context.
SUFFIXES = {TRAINING: "train", VALIDATION: "val"}
MAX_NAME = 500 - 6  # MLflow's limit on a dataset name, less the suffix
MAX_DIGEST = 36  # MLflow's limit on a digest
MAX_SETTING = 500  # characters kept of each setting in a code source (MLflow keeps 64 KiB of a source)
CODE, LOCAL = "code", "local"  # MLflow's source types of a code source and of a local file
# The kinds of numpy dtypes whose MLflow tensor spec is their name (bool, integers, floats, complex); MLflow
# renames strings and bytes and cannot always describe the others.
_NUMERIC_KINDS = frozenset("biufc")


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset input of a run, as MLflow stores it: JSON strings for the source, schema and profile."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str
    profile: str
    context: str

    @property
    def key(self) -> tuple[str, str]:
        """What MLflow tells inputs of one run apart by: (name, digest)."""
        return self.name, self.digest

    @property
    def tags(self) -> dict[str, str]:
        """The input's tags: its context, which the UI shows beside the dataset."""
        return {CONTEXT_TAG: self.context}

    def entity(self) -> DatasetInput:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(self.name, self.digest, self.source_type, self.source, self.schema, self.profile)
        return DatasetInput(dataset, [InputTag(CONTEXT_TAG, self.context)])


def describe_dataset(
    name: str,
    digest: str,
    source: str | Mapping[str, Any],
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[DatasetRecord, ...]:
    """One record per split of ``splits`` (context → ``(features (m, n), targets (m, k))``), in its order.

    ``source`` is a file path (MLflow's ``local`` source) or, for data that is generated or loaded by code,
    the settings that produce it (a ``code`` source; values of secret-looking keys are masked, passwords in
    URLs redacted, each value cut to :data:`MAX_SETTING` characters). ``digest`` (at most 36 characters)
    identifies the data: the sweep's fingerprint. Raises ValueError for an unknown context or a digest
    MLflow would refuse.
    """
    if not digest or len(digest) > MAX_DIGEST:
        raise ValueError(f"a dataset digest has 1 to {MAX_DIGEST} characters; got {digest!r}")
    unknown = sorted(set(splits) - set(SUFFIXES))
    if unknown:
        raise ValueError(f"unknown dataset context {unknown[0]!r}; contexts: {', '.join(SUFFIXES)}")
    origin = _settings(source) if isinstance(source, Mapping) else redact(str(source))
    source_type, source_json = _source(origin)
    records = []
    for context, (features, targets) in splits.items():
        split_name = f"{name[:MAX_NAME]}-{SUFFIXES[context]}"
        schema = _tensor_schema(features, targets)
        if source_json is None or schema is None:
            records.append(_described_by_mlflow(split_name, digest, origin, features, targets, context))
        else:
            profile = _profile(features, targets)
            records.append(DatasetRecord(split_name, digest, source_type, source_json, schema, profile, context))
    return tuple(records)


def _settings(source: Mapping[str, Any]) -> dict[str, str]:
    """The settings of a code source as they may be recorded: secrets masked, each value cut."""
    return {str(k): redact_setting(str(k), v)[:MAX_SETTING] for k, v in source.items()}


def _source(origin: str | dict[str, str]) -> tuple[str, str] | tuple[None, None]:
    """(source type, source JSON) as MLflow's source of ``origin`` gives them: a code source for settings,
    a local file for a path MLflow reads as one; (None, None) where MLflow's registry must decide (a URI
    with a scheme, a dataset source plugin installed, Windows)."""
    if isinstance(origin, dict):
        return CODE, json.dumps({"tags": origin})
    if _is_local_path(origin) and not _dataset_source_plugins():
        return LOCAL, json.dumps({"uri": origin})
    return None, None


def _is_local_path(path: str) -> bool:
    """Whether MLflow takes ``path`` for a local file as it is: no URI scheme (on POSIX, where a drive letter
    is not one), so no source but its local one claims it."""
    if os.name == "nt":
        return False
    try:
        return urllib.parse.urlparse(path).scheme == ""
    except ValueError:
        return False


@functools.cache
def _dataset_source_plugins() -> bool:
    """Whether a package registers MLflow dataset sources (they may claim local paths); read once."""
    from importlib import metadata

    return bool(metadata.entry_points(group="mlflow.dataset_source"))


def _tensor_spec(array: object) -> str | None:
    """MLflow's tensor schema of a plain numeric array (``[{"type": "tensor", "tensor-spec": {"dtype": ...,
    "shape": [-1, ...]}}]``, the first axis variable) as JSON; None for anything else."""
    import numpy as np

    if type(array) is not np.ndarray or array.ndim < 1 or array.dtype.kind not in _NUMERIC_KINDS:
        return None
    shape = [-1, *array.shape[1:]]
    return json.dumps([{"type": "tensor", "tensor-spec": {"dtype": array.dtype.name, "shape": shape}}])


def _tensor_schema(features: object, targets: object) -> str | None:
    """The schema JSON of MLflow's numpy dataset of ``features`` and ``targets`` (None: no targets), or None
    where it is MLflow's to say."""
    features_spec = _tensor_spec(features)
    targets_spec = None if targets is None else _tensor_spec(targets)
    if features_spec is None or (targets is not None and targets_spec is None):
        return None
    return json.dumps({"mlflow_tensorspec": {"features": features_spec, "targets": targets_spec}})


def _profile(features: np.ndarray, targets: np.ndarray | None) -> str:
    """The profile JSON of MLflow's numpy dataset of arrays it has a tensor schema of: shape, size and bytes
    of the features, then of the targets."""
    profile = {}
    for part, array in (("features", features), ("targets", targets)):
        if array is not None:
            profile.update({f"{part}_shape": array.shape, f"{part}_size": array.size, f"{part}_nbytes": array.nbytes})
    return json.dumps(profile)


def _described_by_mlflow(
    name: str, digest: str, origin: str | dict[str, str], features: Any, targets: Any, context: str
) -> DatasetRecord:
    """The record as ``mlflow.data.from_numpy`` describes the split: for what is not computed here."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    source = CodeDatasetSource(origin) if isinstance(origin, dict) else _file_source(origin)
    d = mlflow.data.from_numpy(features, source=source, targets=targets, name=name, digest=digest).to_dict()
    return DatasetRecord(d["name"], d["digest"], d["source_type"], d["source"], d["schema"], d["profile"], context)


def _file_source(path: str):
    """MLflow's source for a local file (``local``, ``{"uri": path}``), chosen from its registry."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # two registered classes answer for a local path; MLflow takes the first
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return resolve_dataset_source(path)


def log_dataset_inputs(client: MlflowClient, run_id: str, records: Sequence[DatasetRecord]) -> None:
    """All ``records`` in one transaction on an embedded store (:func:`tracking.run_writes.log_inputs`), else
    in one ``log_inputs`` request; retried on transient errors. Inputs the run holds already are left as they
    are, so logging the same records again (a resumed sweep) changes nothing."""
    if records and not run_writes.log_inputs(client, run_id, records):
        with_retries(client.log_inputs, run_id, [r.entity() for r in records], what=f"log the inputs of {run_id}")
