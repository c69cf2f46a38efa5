"""A trained model you can keep: network, parameters and the data's preprocessing, predicting on raw rows.

    model = optcore.Model.from_training(dataset, network, history.params)
    model.predict(frame)          # original labels (or values), shape (m,)
    model.predict_proba(frame)    # (m, K) class probabilities, columns in model.classes order

``frame`` holds raw rows in the training file's format: a DataFrame with its columns (extra columns are
ignored, order does not matter), or an array with the columns in the original order. Rows go through the
same fitted :class:`~optcore.preprocess.Preprocessor` as the training data, so

    model.predict_proba(raw)  ==  network.predict(params, dataset.preprocess.transform(raw))   (binary: column 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optcore.errors import OptcoreError
from optcore.network import Network
from optcore.preprocess import Preprocessor


@dataclass
class Model:
    """``network`` with its ``params`` and the ``preprocess`` its training data went through."""

    network: Network
    params: list[np.ndarray]
    preprocess: Preprocessor

    @classmethod
    def from_training(cls, dataset: Any, network: Network, params: Sequence[np.ndarray]) -> Model:
        """The model for ``network`` trained on ``dataset`` (an :class:`optcore.Dataset`) to ``params``."""
        if dataset.preprocess is None:
            raise OptcoreError(f"dataset {dataset.name!r} carries no preprocessing; load it with optcore.load_dataset")
        if network.sizes[0] != dataset.n_features or network.task != dataset.task:
            raise OptcoreError(
                f"the network ({network.sizes[0]} inputs, {network.task}) does not fit dataset {dataset.name!r} "
                f"({dataset.n_features} features, {dataset.task})"
            )
        return cls(network, [np.array(p) for p in params], dataset.preprocess)

    @property
    def task(self) -> str:
        return self.network.task

    @property
    def classes(self) -> np.ndarray | None:
        """Original class labels in the order of :meth:`predict_proba`'s columns (None for regression)."""
        return self.preprocess.classes

    def _outputs(self, X: Any) -> np.ndarray:
        inputs = self.preprocess.transform(X).astype(self.network.dtype, copy=False)
        return self.network.predict(self.params, inputs)

    def predict(self, X: Any) -> np.ndarray:
        """Original labels (classification) or values in the target's own units (regression), ``(m,)``."""
        return self.preprocess.decode(self._outputs(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(m, K)``, columns in :attr:`classes` order; binary gives ``[1 − p, p]``."""
        if self.task == "regression":
            raise OptcoreError("predict_proba needs a classification model; this one is a regression")
        p = self._outputs(X)
        return np.hstack([1.0 - p, p]) if self.task == "binary" else p
