"""The data a run trained on as MLflow dataset inputs, so the UI's Datasets column and run page show it.

A sweep describes its data once (:func:`describe_dataset`: ``mlflow.data`` reads the arrays' shapes and
dtypes for the schema and profile; nothing is copied or hashed again) and every run of the sweep logs the same
records (:func:`log_dataset_inputs`, one ``log_inputs`` request per run). A record is plain strings, so it is
cheap to pickle to the writer process. Each split is one dataset with its own name (``moons-train``,
``moons-val``: MLflow keeps one input per name and digest in a run) and the input tag ``mlflow.data.context``
(``training``, ``validation``); the digest of both is the data's fingerprint, the one ``sweeps reproduce``
checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    if not digest or len(digest) > MAX_DIGEST:
        raise ValueError(f"a dataset digest has 1 to {MAX_DIGEST} characters; got {digest!r}")
    unknown = sorted(set(splits) - set(SUFFIXES))
    if unknown:
        raise ValueError(f"unknown dataset context {unknown[0]!r}; contexts: {', '.join(SUFFIXES)}")
    if isinstance(source, Mapping):
        origin = CodeDatasetSource({str(k): redact_setting(str(k), v)[:MAX_SETTING] for k, v in source.items()})
    else:
        origin = _file_source(redact(str(source)))
    records = []
    for context, (features, targets) in splits.items():
        split_name = f"{name[:MAX_NAME]}-{SUFFIXES[context]}"
        described = mlflow.data.from_numpy(features, source=origin, targets=targets, name=split_name, digest=digest)
        d = described.to_dict()
        records.append(
            DatasetRecord(d["name"], d["digest"], d["source_type"], d["source"], d["schema"], d["profile"], context)
        )
    return tuple(records)


def _file_source(path: str):
    """MLflow's source for a local file (``local``, ``{"uri": path}``), chosen from its registry."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # two registered classes answer for a local path; MLflow takes the first
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return resolve_dataset_source(path)


def log_dataset_inputs(client: MlflowClient, run_id: str, records: Sequence[DatasetRecord]) -> None:
    """All ``records`` in one ``log_inputs`` request, retried on transient errors. Inputs the run holds already
    are left as they are, so logging the same records again (a resumed sweep) changes nothing."""
    if records:
        with_retries(client.log_inputs, run_id, [r.entity() for r in records], what=f"log the inputs of {run_id}")
