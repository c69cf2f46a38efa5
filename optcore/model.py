"""A trained model you can keep: network, parameters and the data's preprocessing, predicting on raw rows.

    model = optcore.Model.from_training(dataset, network, history.params)
    model.predict(frame)          # original labels (or values), shape (m,)
    model.predict_proba(frame)    # (m, K) class probabilities, columns in model.classes order

``frame`` holds raw rows in the training file's format: a DataFrame with its columns (extra columns are
ignored, order does not matter), or an array with the columns in the original order. Rows go through the
same fitted :class:`~optcore.preprocess.Preprocessor` as the training data, so

    model.predict_proba(raw)  ==  network.predict(params, dataset.preprocess.transform(raw))   (binary: column 1)

This is the issue's "Network.predict / predict_proba on raw arrays": a :class:`Network` holds no parameters
by design, so the model that predicts is the network, its parameters and the preprocessing together.

``model.save(folder)`` writes three files and ``Model.load(folder)`` reads them back:

    network.json     layer sizes, activation, task, l2, init, dtype (and the format version)
    weights.npz      W_1, b_1, …, W_L, b_L (NumPy, no pickle)
    preprocess.pkl   the fitted Preprocessor (scikit-learn objects): a pickle, so load only folders you trust
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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

    # -- keeping it -----------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the model to ``folder`` (created; files of the same names are replaced); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        net = self.network
        config = {
            "format": SAVE_FORMAT,
            "sizes": net.sizes,
            "activation": net.activation.name,
            "task": net.task,
            "l2": net.l2,
            "init": net.init_name,
            "dtype": net.dtype.name,
        }
        (folder / NETWORK_FILE).write_text(json.dumps(config, indent=2) + "\n")
        np.savez(folder / WEIGHTS_FILE, **{_weight_name(i): p for i, p in enumerate(self.params)})
        with open(folder / PREPROCESS_FILE, "wb") as f:
            pickle.dump(self.preprocess, f, protocol=pickle.HIGHEST_PROTOCOL)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Model:
        """The model :meth:`save` wrote to ``folder``. Raises :class:`OptcoreError` for a folder without one."""
        folder = Path(folder)
        missing = [n for n in (NETWORK_FILE, WEIGHTS_FILE, PREPROCESS_FILE) if not (folder / n).is_file()]
        if missing:
            raise OptcoreError(f"{folder}: not a saved optcore model (no {', '.join(missing)})")
        config = json.loads((folder / NETWORK_FILE).read_text())
        if config.get("format") != SAVE_FORMAT:
            found = config.get("format")
            raise OptcoreError(f"{folder}: saved in model format {found!r}; this optcore reads {SAVE_FORMAT}")
        network = Network(
            config["sizes"],
            activation=config["activation"],
            task=config["task"],
            l2=config["l2"],
            init=config["init"],
            dtype=config["dtype"],
        )
        with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as archive:
            params = [archive[_weight_name(i)] for i in range(2 * network.n_layers)]
        with open(folder / PREPROCESS_FILE, "rb") as f:
            preprocess = pickle.load(f)  # the folder's own, written by save(): trusted as the docstring says
        return cls(network, params, preprocess)


SAVE_FORMAT = 1
NETWORK_FILE, WEIGHTS_FILE, PREPROCESS_FILE = "network.json", "weights.npz", "preprocess.pkl"


def _weight_name(i: int) -> str:
    """``W_1``, ``b_1``, ``W_2``, … for the flat parameter list's position ``i``."""
    return f"{'Wb'[i % 2]}_{i // 2 + 1}"
