"""Where a table comes from: a file, a user's loader function, or OpenML — read into a :class:`Table`.

Each source is one function in :data:`SOURCES` (and each file format one reader in :data:`READERS`), and
every failure is an :class:`OptcoreError` naming the file, column or function and what is allowed. Nothing
here splits, encodes or scales; :mod:`optcore.tabular` does that.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optcore.errors import OptcoreError


@dataclass
class Table:
    """Raw features (a DataFrame, or a numeric array read by position) and the target, one row per sample."""

    name: str
    features: Any  # pandas.DataFrame | np.ndarray (m, n_columns)
    y: np.ndarray  # (m,)
    target: str
    params: dict[str, Any] = field(default_factory=dict)  # how it was read, as the Dataset records it


def _show_columns(columns) -> str:
    names = [str(c) for c in columns]
    return ", ".join(names[:20]) + (f", … ({len(names)} columns)" if len(names) > 20 else "")


def split_target(name: str, frame: Any, target: str | None, params: dict) -> Table:
    """Take the ``target`` column (the last one when ``None``) out of ``frame``."""
    _check_target(name, frame.columns, target)
    target = frame.columns[-1] if target is None else target
    y = frame[target].to_numpy()
    features = frame.drop(columns=[target])
    return Table(name, features, y, str(target), {**params, "target": str(target)})


def _arrays(name: str, X: Any, y: Any, target: str | None, params: dict, columns=None) -> Table:
    """A table from separate ``X`` and ``y``; a ``target`` name has nothing to choose from here."""
    if target is not None:
        raise OptcoreError(f"{name}: target applies to a single table; this source gives X and y separately")
    if hasattr(X, "columns"):
        features = X
    else:
        features = np.asarray(X)
        if features.ndim != 2 or features.dtype.kind not in "biuf":
            raise OptcoreError(
                f"{name}: X must be a 2-D numeric array or a DataFrame; got {features.dtype} of shape {features.shape}"
            )
        if columns is not None:
            import pandas as pd

            features = pd.DataFrame(features, columns=[str(c) for c in columns], copy=False)
    y = np.asarray(y).ravel() if not hasattr(y, "to_numpy") else y.to_numpy().ravel()
    if len(y) != len(features):
        raise OptcoreError(f"{name}: X has {len(features)} rows but y has {len(y)}")
    target_name = str(getattr(y, "name", None) or "y")
    return Table(name, features, y, target_name, params)


# -- files ---------------------------------------------------------------------------------------------------
def _read_text(sep: str) -> Callable:
    def read(path: Path, target: str | None, params: dict) -> Table:
        import pandas as pd

        kind = "TSV" if sep == "\t" else "CSV"
        try:
            return _read_delimited(path, sep, target, params)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
            if isinstance(e, OptcoreError):
                raise
            raise OptcoreError(f"{path}: could not read it as {kind} ({e})") from None

    return read


TEXT_CHUNK_ROWS = 1 << 16


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def _read_delimited(path: Path, sep: str, target: str | None, params: dict) -> Table:
    """A CSV/TSV file. While its features are numeric they are read in chunks straight into one float64 array
    sized from the line count, so a large numeric file costs that array and one chunk, not pandas' parse
    buffers and consolidation copy on top (about 3× the array). A text value anywhere (or a line count that
    does not fit) means pandas reads the whole file at once instead, inferring each column's type from all
    of it; both ways give the same table.
    """
    import pandas as pd

    capacity = max(_count_lines(path) - 1, 0)  # minus the header; quoted newlines only make it larger
    block, filled, targets, names = None, 0, [], None
    for chunk in pd.read_csv(path, sep=sep, chunksize=TEXT_CHUNK_ROWS):
        if names is None:
            _check_target(path.name, chunk.columns, target)
            target = chunk.columns[-1] if target is None else target
            names = [c for c in chunk.columns if c != target]
            block = np.empty((capacity, len(names)))
        features = chunk[names]
        if not all(pd.api.types.is_numeric_dtype(features[c]) for c in names) or filled + len(chunk) > capacity:
            del block, targets
            return split_target(path.name, pd.read_csv(path, sep=sep), target, params)
        block[filled : filled + len(chunk)] = features.to_numpy(dtype=np.float64)
        targets.append(chunk[target].to_numpy())
        filled += len(chunk)
    if names is None:
        raise OptcoreError(f"{path.name}: the file holds no rows")
    frame = pd.DataFrame(block[:filled], columns=names, copy=False)
    return Table(path.name, frame, np.concatenate(targets), str(target), {**params, "target": str(target)})


def _check_target(name: str, columns, target: str | None) -> None:
    if len(columns) < 2:
        raise OptcoreError(f"{name}: a table needs at least one feature column and a target; it has {len(columns)}")
    if target is not None and target not in columns:
        raise OptcoreError(f"{name}: no target column {target!r}; columns: {_show_columns(columns)}")


def _read_parquet(path: Path, target: str | None, params: dict) -> Table:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except ImportError:
        raise OptcoreError(
            f"{path}: reading Parquet needs pyarrow; install it with `pip install pyarrow` "
            "(or the project's `parquet` extra), or give a CSV"
        ) from None
    except (ValueError, OSError) as e:
        raise OptcoreError(f"{path}: could not read it as Parquet ({e})") from None
    return split_target(path.name, frame, target, params)


def _read_npz(path: Path, target: str | None, params: dict) -> Table:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "X" not in keys or "y" not in keys:
                raise OptcoreError(f"{path}: an .npz dataset holds arrays 'X' and 'y'; this one holds: {keys}")
            X, y = archive["X"], archive["y"]
    except (ValueError, OSError) as e:
        raise OptcoreError(f"{path}: could not read it as NumPy .npz ({e})") from None
    return _arrays(path.name, X, y, target, params)


def _read_svmlight(path: Path, target: str | None, params: dict) -> Table:
    from sklearn.datasets import load_svmlight_file

    try:
        X, y = load_svmlight_file(str(path), dtype=np.float64)
    except (ValueError, OSError) as e:
        raise OptcoreError(f"{path}: could not read it as svmlight/libsvm ({e})") from None
    return _arrays(path.name, X.toarray(), y, target, params)  # the network trains on dense rows


READERS: dict[str, Callable[[Path, str | None, dict], Table]] = {
    ".csv": _read_text(","),
    ".tsv": _read_text("\t"),
    ".parquet": _read_parquet,
    ".npz": _read_npz,
    ".svmlight": _read_svmlight,
    ".libsvm": _read_svmlight,
    ".svm": _read_svmlight,
}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".zst")  # pandas reads these CSV/TSV files as they are


def from_path(source: str | os.PathLike, *, target: str | None = None) -> Table:
    """A CSV, TSV, Parquet, ``.npz`` (arrays ``X``, ``y``) or svmlight/libsvm file, chosen by its suffix."""
    path = Path(source).expanduser()
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) > 1 and suffixes[-1] in COMPRESSIONS and suffixes[-2] in (".csv", ".tsv"):
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in READERS:
        raise OptcoreError(f"{source}: unknown file type {suffix or '(none)'!r}; allowed: {', '.join(READERS)}")
    if not path.is_file():
        raise OptcoreError(f"{source}: no such file")
    return READERS[suffix](path, target, {"path": str(path)})


# -- a user's function ---------------------------------------------------------------------------------------
def from_loader(source: str, *, target: str | None = None, **kwargs) -> Table:
    """``"package.module:function"`` called with ``kwargs``; it returns ``(X, y)``, ``(DataFrame, target)``,
    a DataFrame (the target chosen by ``target``, the last column by default) or a scikit-learn Bunch."""
    module_name, _, function_name = str(source).partition(":")
    if not module_name or not function_name:
        raise OptcoreError(f"loader must be written 'package.module:function'; got {source!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise OptcoreError(f"loader {source!r}: cannot import {module_name!r} ({e})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise OptcoreError(f"loader {source!r}: {module_name} has no function {function_name!r}")
    try:
        result = function(**kwargs)
    except Exception as e:  # the user's code: report it as one line, naming the loader
        raise OptcoreError(f"loader {source!r} raised {type(e).__name__}: {e}") from e
    params = {"loader": str(source), **kwargs}
    return _interpret(str(source), result, target, params)


def _interpret(name: str, result: Any, target: str | None, params: dict) -> Table:
    if hasattr(result, "keys") and "data" in result and "target" in result:  # a scikit-learn Bunch
        return _arrays(name, result["data"], result["target"], target, params, result.get("feature_names"))
    if hasattr(result, "columns"):
        return split_target(name, result, target, params)
    if isinstance(result, tuple) and len(result) == 2:
        first, second = result
        if hasattr(first, "columns") and isinstance(second, str):
            if target is not None and target != second:
                raise OptcoreError(f"loader {name!r} names its target {second!r}; the spec asks for {target!r}")
            return split_target(name, first, second, params)
        return _arrays(name, first, second, target, params)
    raise OptcoreError(
        f"loader {name!r} returned {type(result).__name__}; it must return (X, y), (DataFrame, target name), "
        "a DataFrame or a scikit-learn Bunch"
    )


# -- OpenML --------------------------------------------------------------------------------------------------
OFFLINE_ENV = "OPTSWEEP_OFFLINE"
OPENML_HOST = "www.openml.org"


def openml_cache(data_home: str | os.PathLike | None) -> Path:
    """scikit-learn's data home (without creating it, unlike ``sklearn.datasets.get_data_home``)."""
    home = data_home or os.environ.get("SCIKIT_LEARN_DATA") or Path("~") / "scikit_learn_data"
    return Path(home).expanduser()


def _cached_description(home: Path, source: str | int, version: str | int) -> Path:
    """The file ``fetch_openml`` caches first for this name or id: present means no download is needed."""
    api = home / "openml" / "openml.org" / "api" / "v1" / "json" / "data"
    if isinstance(source, int) or str(source).isdigit():
        return api / f"{int(source)}.gz"
    listing = api / "list" / "data_name" / str(source) / "limit" / "2"
    return listing / "status" / "active" / ".gz" if version == "active" else listing / "data_version" / f"{version}.gz"


def _reachable(host: str, timeout: float = 3.0) -> str | None:
    """None when ``host`` answers on port 443, else why not."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        return str(e) or type(e).__name__
    return None


def from_openml(
    source: str | int, *, target: str | None = None, version: str | int = "active", data_home: str | None = None
) -> Table:
    """An OpenML dataset (name or data id) through ``sklearn.datasets.fetch_openml``, cached in ``data_home``.

    When the cache does not hold it, the download needs openml.org: with ``OPTSWEEP_OFFLINE=1`` set, or the
    host unreachable, this fails at once (before anything is written) instead of retrying.
    """
    home = openml_cache(data_home)
    if not _cached_description(home, source, version).exists():
        why = "OPTSWEEP_OFFLINE is set" if os.environ.get(OFFLINE_ENV) else _reachable(OPENML_HOST)
        if why is not None:
            raise OptcoreError(
                f"OpenML dataset {source!r} is not in the cache at {home} and cannot be downloaded ({why}); "
                "fetch it once while online, or point data_home at a cache that holds it"
            )
    from sklearn.datasets import fetch_openml

    by_id = isinstance(source, int) or str(source).isdigit()
    which = {"data_id": int(source)} if by_id else {"name": str(source), "version": version}
    try:
        bunch = fetch_openml(**which, data_home=str(home), as_frame=True, target_column=target or "default-target")
    except Exception as e:  # network, OpenML's own errors, unknown names: one line naming the dataset
        raise OptcoreError(f"OpenML dataset {source!r}: {type(e).__name__}: {e}") from e
    if bunch.target is None or getattr(bunch.target, "ndim", 1) != 1:
        raise OptcoreError(f"OpenML dataset {source!r} has no single default target; name one with target")
    params = {"openml": source, "version": version, "data_home": str(home)}
    return Table(f"openml:{source}", bunch.data, bunch.target.to_numpy(), str(bunch.target.name), params)


SOURCES: dict[str, Callable[..., Table]] = {"path": from_path, "loader": from_loader, "openml": from_openml}
