"""The fitted way from raw rows to the network's inputs, and from its outputs back to original labels.

A :class:`Preprocessor` is what a :class:`~optcore.Dataset` learnt from its training split: a fitted
scikit-learn transformer for the features, the original class labels in the order of the network's
outputs, and, for regression, the target's training mean and standard deviation. Applied to new raw rows it
gives exactly the inputs the network was trained on:

    x̃ = features.transform(x)                     (m, n_features), float64
    binary:      label = classes[1] if p ≥ ½ else classes[0]            (p = the network's one output)
    multiclass:  label = classes[argmax_k p_k]
    regression:  value = ŷ·σ_y + μ_y                                      (μ_y, σ_y from the training split)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optcore.errors import OptcoreError

# Raw training rows a Preprocessor keeps as an example of the input format (an exported model's input example).
EXAMPLE_ROWS = 5
# Rows transformed per call when filling a large array: bounds the transformer's temporary copies.
CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class Preprocessor:
    """Raw rows → network inputs (``transform``), network outputs → labels or values (``decode``).

    ``features``: a fitted scikit-learn transformer (or anything with its ``transform``); ``columns``: the
    raw feature columns by name, in order (``None`` when the data came as a bare array, then rows are read
    by position); ``n_columns``: how many raw columns a row has; ``classes``: original labels in output
    order (``None`` for regression); ``example``: the first few raw training rows (DataFrame or array),
    showing the input format.
    """

    task: str
    features: Any
    columns: tuple[str, ...] | None
    n_columns: int
    classes: np.ndarray | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    example: Any = field(default=None, compare=False, repr=False)

    @property
    def n_features(self) -> int:
        """Width of the transformed rows (one-hot columns counted)."""
        return int(self._width())

    def _width(self) -> int:
        names = getattr(self.features, "get_feature_names_out", None)
        return len(names()) if names is not None else self.n_columns

    def _frame(self, X: Any) -> Any:
        """``X`` in the form the transformer was fitted on: a DataFrame with the raw columns, or an array."""
        if self.columns is None:
            X = np.asarray(X) if not hasattr(X, "to_numpy") else X.to_numpy()
            if X.ndim != 2 or X.shape[1] != self.n_columns:
                raise OptcoreError(f"rows must have {self.n_columns} columns; got shape {X.shape}")
            return X
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.columns if c not in X.columns]
            if missing:
                raise OptcoreError(
                    f"rows have no column {missing[0]!r}; the model reads columns: {', '.join(self.columns)}"
                )
            return X[list(self.columns)]
        X = np.asarray(X, dtype=object if not _is_numeric_array(X) else None)
        if X.ndim != 2 or X.shape[1] != self.n_columns:
            raise OptcoreError(
                f"rows must have {self.n_columns} columns ({', '.join(self.columns)}); got shape {X.shape}"
            )
        return pd.DataFrame(X, columns=list(self.columns)).infer_objects()

    def transform(self, X: Any) -> np.ndarray:
        """Raw rows (DataFrame, or array with the raw columns in order) → ``(m, n_features)`` float64."""
        X = self._frame(X)
        out = np.empty((len(X), self._width()), dtype=np.float64)
        fill(self.features, X, np.arange(len(X)), out)
        return out

    def encode(self, y: Any) -> np.ndarray:
        """Original targets → what the loss takes: ``(m, 1)`` 0/1 or standardised values, or ``(m, K)`` one-hot."""
        y = np.asarray(y)
        if self.task == "regression":
            return ((y.astype(np.float64) - self.target_mean) / self.target_std)[:, None]
        unknown = ~np.isin(y, self.classes)
        if unknown.any():
            raise OptcoreError(
                f"label {y[unknown][0]!r} was not seen in training; labels: {', '.join(map(str, self.classes))}"
            )
        if self.task == "binary":
            return (y == self.classes[1]).astype(np.float64)[:, None]
        return (y[:, None] == self.classes).astype(np.float64)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """The network's outputs (probabilities or standardised values) → original labels or values, ``(m,)``."""
        if self.task == "regression":
            return outputs[:, 0].astype(np.float64) * self.target_std + self.target_mean
        if self.task == "binary":
            return self.classes[(outputs[:, 0] >= 0.5).astype(np.intp)]
        return self.classes[np.argmax(outputs, axis=1)]


def _is_numeric_array(X: Any) -> bool:
    return np.asarray(X).dtype.kind in "biuf"


def fill(features: Any, X: Any, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = features.transform(X[rows[i]])``, ``CHUNK_ROWS`` rows at a time.

    Transforming in chunks keeps scikit-learn's intermediate copies (column selection, scaling, stacking)
    at the size of one chunk, so a large table costs its output array and little more.
    """
    take = X.iloc.__getitem__ if hasattr(X, "iloc") else X.__getitem__
    for start in range(0, len(rows), CHUNK_ROWS):
        part = rows[start : start + CHUNK_ROWS]
        out[start : start + len(part)] = features.transform(take(part))


@dataclass(frozen=True, eq=False)
class Standardise:
    """``x̃ = (x − mean) / std``: the registry datasets' feature transform, for new rows.

    The registry datasets standardise with NumPy's own mean and std (their fingerprints are of those
    numbers); this repeats exactly that arithmetic. It is NumPy only, so that loading a registry dataset
    needs no scikit-learn (whose import costs about a second per process)."""

    mean: np.ndarray
    std: np.ndarray

    def transform(self, X: Any) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


def standard_scaler(mean: np.ndarray, std: np.ndarray) -> Standardise:
    """The transform that standardises rows with ``mean`` and ``std`` (see :class:`Standardise`)."""
    return Standardise(mean, std)
