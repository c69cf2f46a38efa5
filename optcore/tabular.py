"""A table of raw columns made ready for the network: split, encoded and scaled on the training split only.

    numeric columns:      [SimpleImputer(impute)] → StandardScaler          x̃ = (x − μ_train) / σ_train
    categorical columns:  [SimpleImputer(most_frequent)] → OneHotEncoder(handle_unknown="ignore")

joined by a scikit-learn ``ColumnTransformer`` fitted on the training rows (a category first met in
validation or later becomes all zeros). The fitted transformer, the original class labels and the target's
scaling travel with the :class:`~optcore.Dataset` as its :class:`~optcore.preprocess.Preprocessor`.

Targets: ``(m, 1)`` 0/1 for binary (``classes[1]`` is 1), one-hot ``(m, K)`` for multiclass (classes sorted),
``(m, 1)`` standardised values for regression — the registry datasets' conventions. Without ``task`` it is
inferred from the target and stated in ``dataset.params["task_inferred"]``:

    non-numeric labels          → binary with 2 distinct values, else multiclass
    non-integer numbers         → regression
    integers                    → binary with 2 distinct values, multiclass with ≤ 20, else regression

Missing feature values are refused (naming the column and how many rows) unless ``impute`` is one of
:data:`IMPUTE`. The ``fingerprint`` hashes the raw table (column names, values) and target, not the path.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from optcore.data import Dataset, fingerprint
from optcore.errors import OptcoreError
from optcore.preprocess import EXAMPLE_ROWS, Preprocessor, fill
from optcore.sources import SOURCES, Table

TASKS = ("binary", "multiclass", "regression")
IMPUTE = ("mean", "median", "most_frequent")
MAX_INFERRED_CLASSES = 20
# The keyword arguments each source takes besides target (a loader takes its function's own).
SOURCE_PARAMS: dict[str, tuple[str, ...] | None] = {"path": (), "openml": ("version", "data_home"), "loader": None}


def load_table(
    kind: str,
    source: Any,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    target: str | None = None,
    task: str | None = None,
    impute: str | None = None,
    train_on: str = "train",
    **params,
) -> Dataset:
    """Read ``source`` of ``kind`` (``path``, ``loader`` or ``openml``) and make it a split, encoded Dataset.

    Raises :class:`OptcoreError` for an unreadable source, an unknown target column, a task that does not fit
    the target, missing values without ``impute``, or a class too rare to stratify.
    """
    if kind not in SOURCES:
        raise OptcoreError(f"unknown dataset source {kind!r}; allowed: {', '.join(SOURCES)}")
    allowed = SOURCE_PARAMS[kind]
    if allowed is not None and set(params) - set(allowed):
        extra = sorted(set(params) - set(allowed))[0]
        raise OptcoreError(f"a {kind} dataset has no parameter {extra!r}; allowed: {', '.join(allowed) or 'none'}")
    if task is not None and task not in TASKS:
        raise OptcoreError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    if impute is not None and impute not in IMPUTE:
        raise OptcoreError(f"impute must be one of {', '.join(IMPUTE)}; got {impute!r}")
    table = SOURCES[kind](source, target=target, **params)
    return prepare(table, seed=seed, val_fraction=val_fraction, task=task, impute=impute, train_on=train_on)


def prepare(
    table: Table, *, seed: int, val_fraction: float, task: str | None, impute: str | None, train_on: str = "train"
) -> Dataset:
    """Split ``table`` (stratified for classification), fit the column transformer on the training rows and
    fill the float64 arrays chunk by chunk. With ``train_on="train+val"`` the training rows are the
    training split followed by the validation split, and everything is fitted on them (see
    :func:`optcore.load_dataset`). It consumes ``table``: the raw rows are let go once split, so a
    large table costs about its raw rows plus the arrays made from them, not copies of copies.
    """
    features, y = table.features, table.y
    _refuse_missing_targets(table)
    inferred = None
    if task is None:
        task, inferred = infer_task(y, table.target)
    classes = _check_task(table, task)
    digest = table_fingerprint(features, y, table.target)
    if impute is None:
        _refuse_missing(table)
    rows_train, rows_val = _split(table, task, val_fraction, seed)
    if train_on == "train+val":
        rows_train = np.concatenate([rows_train, rows_val])
    columns = tuple(str(c) for c in features.columns) if hasattr(features, "columns") else None
    n_columns = features.shape[1]

    take = features.iloc.__getitem__ if hasattr(features, "iloc") else features.__getitem__
    raw_train, raw_val = take(rows_train), take(rows_val)
    table.features = features = take = None  # the split copies are all that is kept from here on
    transformer = column_transformer(raw_train, impute).fit(raw_train)
    # A few raw rows, the input example of an exported model.
    example = (raw_train.iloc if hasattr(raw_train, "iloc") else raw_train)[:EXAMPLE_ROWS].copy()
    width = len(transformer.get_feature_names_out())
    X_train, X_val = np.empty((len(rows_train), width)), np.empty((len(rows_val), width))
    fill(transformer, raw_train, np.arange(len(rows_train)), X_train)
    del raw_train
    fill(transformer, raw_val, np.arange(len(rows_val)), X_val)
    del raw_val

    y_train = y[rows_train]
    scaling = {}
    if task == "regression":
        y_train = y_train.astype(np.float64)
        scaling = {"target_mean": float(y_train.mean()), "target_std": float(y_train.std() or 1.0)}
    pre = Preprocessor(task, transformer, columns, n_columns, classes, example=example, **scaling)
    Y_train, Y_val = pre.encode(y[rows_train]), pre.encode(y[rows_val])
    params = {**table.params, "task": task, "impute": impute, "val_fraction": val_fraction}
    if inferred is not None:
        params["task_inferred"] = inferred
    if train_on != "train":
        params["train_on"] = train_on
    return Dataset(table.name, task, X_train, Y_train, X_val, Y_val, params, seed, digest, preprocess=pre)


def infer_task(y: np.ndarray, target: str) -> tuple[str, str]:
    """(task, the reason in words) from the target values alone; see the module docstring for the rules."""
    values = np.unique(y)
    shown = ", ".join(map(str, values[:5])) + (", …" if len(values) > 5 else "")
    n = len(values)
    if y.dtype.kind not in "biuf":
        task = "binary" if n == 2 else "multiclass"
        return task, f"{task}: target {target!r} holds {n} distinct labels ({shown})"
    if y.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
        return "regression", f"regression: target {target!r} holds non-integer numbers"
    if n == 2:
        return "binary", f"binary: target {target!r} holds 2 distinct values ({shown})"
    if n <= MAX_INFERRED_CLASSES:
        return "multiclass", f"multiclass: target {target!r} holds {n} distinct integers ({shown})"
    return "regression", f"regression: target {target!r} holds {n} distinct integers (more than 20 classes)"


def _check_task(table: Table, task: str) -> np.ndarray | None:
    """The sorted class labels (None for regression), once the task fits the target."""
    if task == "regression":
        if table.y.dtype.kind not in "biuf":
            raise OptcoreError(f"task regression needs a numeric target; {table.target!r} holds {table.y.dtype} values")
        return None
    classes = np.unique(table.y)
    if task == "binary" and len(classes) != 2:
        raise OptcoreError(f"task binary needs 2 distinct target values; {table.target!r} has {len(classes)}")
    if len(classes) < 2:
        raise OptcoreError(f"task {task} needs at least 2 classes; {table.target!r} has {len(classes)}")
    return classes


def _missing(values: Any) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.isna(values))


def _refuse_missing_targets(table: Table) -> None:
    count = int(_missing(table.y).sum())
    if count:
        raise OptcoreError(f"{table.name}: target {table.target!r} is missing in {count} rows; fill or drop them")


def _refuse_missing(table: Table) -> None:
    """Missing feature values are an error naming the first such column and its count of rows."""
    features = table.features
    counts = features.isna().sum() if hasattr(features, "isna") else dict(enumerate(np.isnan(features).sum(axis=0)))
    for column, count in counts.items():
        if count:
            raise OptcoreError(
                f"{table.name}: column {column!r} has missing values in {int(count)} rows; "
                f"fill them in, or set impute to one of {', '.join(IMPUTE)}"
            )


def _split(table: Table, task: str, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and validation splits, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    y = table.y
    if task != "regression":
        values, counts = np.unique(y, return_counts=True)
        if counts.min() < 2:
            raise OptcoreError(
                f"{table.name}: class {values[counts.argmin()]!r} of {table.target!r} has 1 row; "
                "a stratified split needs at least 2 rows per class"
            )
    rows = np.arange(len(y))
    try:
        train, val = train_test_split(
            rows, test_size=val_fraction, random_state=seed, stratify=y if task != "regression" else None
        )
    except ValueError as e:  # e.g. fewer validation rows than classes
        raise OptcoreError(f"{table.name}: cannot split {len(y)} rows with val_fraction={val_fraction} ({e})") from None
    return train, val


def column_transformer(features: Any, impute: str | None) -> Any:
    """The unfitted ColumnTransformer for ``features``: numbers scaled, everything else one-hot encoded."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if hasattr(features, "columns"):
        import pandas as pd

        numeric = [i for i, c in enumerate(features.columns) if pd.api.types.is_numeric_dtype(features[c])]
        categorical = sorted(set(range(features.shape[1])) - set(numeric))
    else:  # a numeric array
        numeric, categorical = list(range(features.shape[1])), []
    numeric, categorical = _positions(numeric), _positions(categorical)
    impute_numbers = [SimpleImputer(strategy=impute)] if impute else []
    # Categories have no mean or median; their missing values take the most frequent category.
    impute_categories = [SimpleImputer(strategy="most_frequent")] if impute else []
    parts = []
    if numeric != []:
        parts.append(("numeric", make_pipeline(*impute_numbers, StandardScaler()), numeric))
    if categorical != []:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
        parts.append(("categorical", make_pipeline(*impute_categories, encoder), categorical))
    return ColumnTransformer(parts, sparse_threshold=0.0, verbose_feature_names_out=False)


def _positions(indices: list[int]) -> list[int] | slice:
    """Column positions, as a slice when they are consecutive: a slice selects without copying the columns."""
    if indices and indices == list(range(indices[0], indices[-1] + 1)):
        return slice(indices[0], indices[-1] + 1)
    return indices


def table_fingerprint(features: Any, y: np.ndarray, target: str) -> str:
    """First 16 hex digits of SHA-256 over the raw columns (names and values) and the target.

    Numbers are hashed as float64 and text as UTF-8, so the same data read from a CSV or a Parquet file, or
    moved to another folder, has the same fingerprint, and any changed value gives another.
    """
    h = hashlib.sha256()
    if hasattr(features, "columns"):
        for column in features.columns:
            h.update(f"\x1e{column}\x1f".encode())
            _hash_values(h, features[column].to_numpy())
    else:
        h.update(fingerprint(np.asarray(features, dtype=np.float64)).encode())
    h.update(f"\x1e{target}\x1f".encode())
    _hash_values(h, y)
    return h.hexdigest()[:16]


def _hash_values(h: Any, values: np.ndarray) -> None:
    if values.dtype.kind in "biuf":
        h.update(np.ascontiguousarray(values, dtype=np.float64).data)
    else:
        h.update("\x1f".join("\x00" if v is None or v != v else str(v) for v in values).encode())
