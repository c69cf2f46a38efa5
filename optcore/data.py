"""scikit-learn datasets by name: generated (``moons`` …) and bundled (``digits`` …), nothing downloaded.

Every dataset comes back split (stratified for classification), standardised with the *training*
statistics only, in scikit-learn's orientation ``X: (n_samples, n_features)``, with targets ready for the
loss: ``(m, 1)`` floats for binary and regression (regression targets standardised too), one-hot
``(m, K)`` for multiclass. The same name, parameters and seed always give the same arrays, and
``fingerprint`` (a hash of those arrays) records exactly which data a run saw.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from optcore import data_cache
from optcore.errors import OptcoreError, UnknownNameError
from optcore.preprocess import EXAMPLE_ROWS, Preprocessor, standard_scaler

# Which rows a model trains on, and its preprocessing is fitted on (load_dataset's ``train_on``).
TRAIN_ON = ("train", "train+val")


@dataclass(frozen=True)
class DatasetInfo:
    """How to make one named dataset: its loader, its parameters with their defaults, and its task."""

    name: str
    load: Callable[..., tuple[np.ndarray, np.ndarray]]  # (seed, **params) -> (X, y)
    defaults: dict[str, object]
    task: Callable[[dict], str]  # resolved params -> "binary" | "multiclass" | "regression"
    n_samples: int | None = None  # fixed size of a bundled dataset

    def size(self, params: dict) -> int:
        return self.n_samples if self.n_samples is not None else int(params.get("n_samples", 0))


def _sk():
    import sklearn.datasets  # deferred: importing scikit-learn costs ~0.5 s

    return sklearn.datasets


def _moons(seed, n_samples, noise):
    return _sk().make_moons(n_samples=n_samples, noise=noise, random_state=seed)


def _circles(seed, n_samples, noise, factor):
    return _sk().make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)


def _blobs(seed, n_samples, n_features, n_classes, cluster_std):
    return _sk().make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=n_classes,
        cluster_std=cluster_std,
        random_state=seed,
    )


def _classification(seed, n_samples, n_features, n_informative, n_redundant, n_classes, class_sep, flip_y):
    return _sk().make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=n_redundant,
        n_classes=n_classes,
        class_sep=class_sep,
        flip_y=flip_y,
        random_state=seed,
    )


def _regression(seed, n_samples, n_features, n_informative, noise):
    return _sk().make_regression(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        noise=noise,
        random_state=seed,
    )


def _bundled(loader_name):
    def load(seed):
        bunch = getattr(_sk(), loader_name)()
        return bunch.data, bunch.target

    return load


def _by_classes(params):
    return "binary" if params["n_classes"] == 2 else "multiclass"


def _const(task):
    return lambda params: task


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("moons", _moons, {"n_samples": 1000, "noise": 0.2}, _const("binary")),
        DatasetInfo("circles", _circles, {"n_samples": 1000, "noise": 0.1, "factor": 0.5}, _const("binary")),
        DatasetInfo(
            "blobs",
            _blobs,
            {"n_samples": 1000, "n_features": 2, "n_classes": 3, "cluster_std": 1.0},
            _by_classes,
        ),
        DatasetInfo(
            "classification",
            _classification,
            {
                "n_samples": 1000,
                "n_features": 20,
                "n_informative": 2,
                "n_redundant": 2,
                "n_classes": 2,
                "class_sep": 1.0,
                "flip_y": 0.01,
            },
            _by_classes,
        ),
        DatasetInfo(
            "regression",
            _regression,
            {"n_samples": 1000, "n_features": 10, "n_informative": 10, "noise": 0.1},
            _const("regression"),
        ),
        DatasetInfo("digits", _bundled("load_digits"), {}, _const("multiclass"), n_samples=1797),
        DatasetInfo("breast_cancer", _bundled("load_breast_cancer"), {}, _const("binary"), n_samples=569),
        DatasetInfo("iris", _bundled("load_iris"), {}, _const("multiclass"), n_samples=150),
        DatasetInfo("wine", _bundled("load_wine"), {}, _const("multiclass"), n_samples=178),
        DatasetInfo("diabetes", _bundled("load_diabetes"), {}, _const("regression"), n_samples=442),
    ]
}


@dataclass(frozen=True)
class Dataset:
    """A split, standardised dataset. ``X_*``: ``(m, n_features)``; ``Y_*``: ``(m, n_outputs)``."""

    name: str
    task: str
    X_train: np.ndarray
    Y_train: np.ndarray
    X_val: np.ndarray
    Y_val: np.ndarray
    params: dict = field(default_factory=dict)
    seed: int = 0
    fingerprint: str = ""
    # How raw rows become X and outputs become labels (see optcore.preprocess); compared by identity.
    preprocess: Preprocessor | None = field(default=None, compare=False, repr=False)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.Y_train.shape[1]

    @property
    def n_train(self) -> int:
        return self.X_train.shape[0]

    def astype(self, dtype) -> Dataset:
        """The same data in ``dtype`` (the fingerprint keeps naming the float64 arrays it came from)."""
        dtype = np.dtype(dtype)
        if self.X_train.dtype == dtype:
            return self
        cast = {
            k: np.ascontiguousarray(getattr(self, k), dtype=dtype) for k in ("X_train", "Y_train", "X_val", "Y_val")
        }
        return replace(self, **cast)


def fingerprint(*arrays: np.ndarray) -> str:
    """First 16 hex digits of SHA-256 over the arrays' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.data)  # the buffer itself: no copy of a large array
    return h.hexdigest()[:16]


def resolve_params(name: str, params: dict) -> dict:
    """The dataset's full parameters (defaults filled in); unknown names and parameters are errors."""
    try:
        info = DATASETS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, list(DATASETS)) from None
    unknown = sorted(set(params) - set(info.defaults))
    if unknown:
        allowed = ", ".join(info.defaults) or "none (it is bundled with scikit-learn)"
        raise OptcoreError(f"dataset {name!r} has no parameter {unknown[0]!r}; its parameters: {allowed}")
    return {**info.defaults, **params}


def load_dataset(
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    *,
    path: str | None = None,
    loader: str | None = None,
    openml: str | int | None = None,
    target: str | None = None,
    task: str | None = None,
    impute: str | None = None,
    train_on: str = "train",
    cache_dir: str | os.PathLike | None = None,
    **params,
) -> Dataset:
    """Load a dataset, split off ``val_fraction`` for validation and standardise it with the training split.

    Exactly one source: ``name`` (a registry dataset, ``params`` its parameters), or one of ``path`` (a CSV,
    TSV, Parquet, ``.npz`` or svmlight file), ``loader`` (``"package.module:function"``, ``params`` its
    keyword arguments) or ``openml`` (a name or data id, ``params``: ``version``, ``data_home``), which
    :func:`optcore.tabular.load_table` reads with ``target``, ``task`` and ``impute``.

    ``train_on="train+val"`` is for a final model once the setting is chosen: the same split, but the
    training arrays hold the training rows followed by the validation rows, and the preprocessing (scaling,
    encoders, target scaling) is fitted on all of them; ``X_val``/``Y_val`` stay the validation rows, which
    are then no longer held out. See :data:`TRAIN_ON`.

    ``cache_dir``: a folder where a registry dataset's split rows are kept (:mod:`optcore.data_cache`), so
    that the same name, parameters, seed and ``val_fraction`` load the next time without generating them or
    importing scikit-learn (about a second per process). The arrays are the same either way.

    Raises :class:`UnknownNameError` for an unknown name and :class:`OptcoreError` for an unknown parameter,
    a ``val_fraction`` outside (0, 1), an unknown ``train_on``, or anything a table source refuses.
    """
    sources = {"name": name, "path": path, "loader": loader, "openml": openml}
    given = [k for k, v in sources.items() if v is not None]
    if len(given) != 1:
        raise OptcoreError(f"give exactly one dataset source of {', '.join(sources)}; got {', '.join(given) or 'none'}")
    if not 0.0 < val_fraction < 1.0:
        raise OptcoreError(f"val_fraction must be in (0, 1); got {val_fraction}")
    if train_on not in TRAIN_ON:
        raise OptcoreError(f"train_on must be one of {', '.join(TRAIN_ON)}; got {train_on!r}")
    if name is None:
        from optcore.tabular import load_table

        kind = given[0]
        return load_table(
            kind,
            sources[kind],
            seed=seed,
            val_fraction=val_fraction,
            target=target,
            task=task,
            impute=impute,
            train_on=train_on,
            **params,
        )
    table_options = {"target": target, "task": task, "impute": impute}
    if any(v is not None for v in table_options.values()):
        key = next(k for k, v in table_options.items() if v is not None)
        raise OptcoreError(f"{key} applies to path, loader and openml datasets, not to the registry dataset {name!r}")
    return _load_registry(name, seed, val_fraction, params, train_on, cache_dir)


def _split_registry(name: str, resolved: dict, seed: int, val_fraction: float, task: str) -> data_cache.Split:
    """The generated (or bundled) rows, split: ``X_train, X_val, y_train, y_val``."""
    X, y = DATASETS[name].load(seed, **resolved)
    X = np.asarray(X, dtype=np.float64)

    from sklearn.model_selection import train_test_split

    stratify = y if task != "regression" else None
    return tuple(train_test_split(X, y, test_size=val_fraction, random_state=seed, stratify=stratify))


def _load_registry(
    name: str,
    seed: int,
    val_fraction: float,
    params: dict,
    train_on: str = "train",
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    resolved = resolve_params(name, params)
    task = DATASETS[name].task(resolved)
    folder = Path(cache_dir) if cache_dir is not None else None
    kept = data_cache.key(name, resolved, seed, val_fraction) if folder is not None else None
    split = data_cache.read(folder, kept) if kept is not None else None
    if split is None:
        split = _split_registry(name, resolved, seed, val_fraction, task)
        if kept is not None:
            data_cache.write(folder, kept, split)
    X_tr, X_va, y_tr, y_va = split
    y = np.concatenate([y_tr, y_va])  # every label, for the classes (their order does not matter)
    if train_on == "train+val":
        X_tr, y_tr = np.concatenate([X_tr, X_va]), np.concatenate([y_tr, y_va])
    example = X_tr[:EXAMPLE_ROWS].copy()

    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    std[std == 0] = 1.0  # constant features (e.g. blank pixels in digits) stay zero, not NaN
    X_tr, X_va = (X_tr - mean) / std, (X_va - mean) / std
    Y_tr, Y_va = _targets(task, y_tr, y_va, y)

    arrays = [np.ascontiguousarray(a) for a in (X_tr, Y_tr, X_va, Y_va)]
    return Dataset(
        name,
        task,
        *arrays,
        params={**resolved, "val_fraction": val_fraction, **({"train_on": train_on} if train_on != "train" else {})},
        seed=seed,
        fingerprint=fingerprint(*arrays),
        preprocess=_registry_preprocessor(task, mean, std, y, y_tr, example),
    )


def _registry_preprocessor(
    task: str, mean: np.ndarray, std: np.ndarray, y: np.ndarray, y_tr: np.ndarray, example: np.ndarray | None = None
):
    """The same standardisation (and target scaling) as :func:`_load_registry`, for new rows."""
    kwargs = {}
    if task == "regression":
        y_tr = y_tr.astype(np.float64)
        kwargs = {"target_mean": float(y_tr.mean()), "target_std": float(y_tr.std() or 1.0)}
    else:
        kwargs = {"classes": np.unique(y)}
    return Preprocessor(task, standard_scaler(mean, std), None, mean.shape[0], example=example, **kwargs)


def _targets(task: str, y_tr: np.ndarray, y_va: np.ndarray, y_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if task == "multiclass":
        classes = np.unique(y_all)
        return ((y_tr[:, None] == classes).astype(np.float64), (y_va[:, None] == classes).astype(np.float64))
    y_tr, y_va = y_tr.astype(np.float64)[:, None], y_va.astype(np.float64)[:, None]
    if task == "regression":  # squared error on standardised targets keeps learning rates comparable
        mean, std = y_tr.mean(), y_tr.std() or 1.0
        return (y_tr - mean) / std, (y_va - mean) / std
    return y_tr, y_va
